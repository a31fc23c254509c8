"""The addresses each instance holds: an address belongs to one project.

Instances registered before hold the addresses they were registered with when those are
IP addresses (a host name is resolved when an instance is registered, not here).

Revision ID: 0005_addresses
Revises: 0004_aof_replay
Create Date: 2026-12-04
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from dcs_migration.networks import address_key

revision: str = "0005_addresses"
down_revision: str | None = "0004_aof_replay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "instance_addresses",
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["instances.instance_id"],
            name=op.f("fk_instance_addresses_instance_id_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("instance_id", "address", name=op.f("pk_instance_addresses")),
    )
    op.create_index(op.f("ix_instance_addresses_address"), "instance_addresses", ["address"])
    instances = op.get_bind().execute(
        sa.text("SELECT instance_id, project_id, addrs FROM instances")
    )
    rows = []
    for instance_id, project_id, addrs in instances:
        held = {_literal_key(addr) for addr in addrs.split(",")} - {None}
        rows += [{"instance_id": instance_id, "address": a, "project_id": project_id} for a in held]
    if rows and table is not None:
        op.bulk_insert(table, rows)


def downgrade() -> None:
    op.drop_index(op.f("ix_instance_addresses_address"), "instance_addresses")
    op.drop_table("instance_addresses")


def _literal_key(addr: str) -> str | None:
    host, _, port = addr.strip().rpartition(":")
    try:
        return address_key(ipaddress.ip_address(host.strip("[]")), int(port))
    except ValueError:
        return None
