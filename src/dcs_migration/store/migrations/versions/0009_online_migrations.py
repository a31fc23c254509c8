"""Online migrations: the online side of a migration task (its source, where it runs, how
far its replication got), one row per task of type online_migration.

Revision ID: 0009_online_migrations
Revises: 0008_work_units
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_online_migrations"
down_revision: str | None = "0008_work_units"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "online_migrations",
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("vpc_id", sa.String(64), nullable=True),
        sa.Column("subnet_id", sa.String(64), nullable=True),
        sa.Column("security_group_id", sa.String(64), nullable=True),
        sa.Column("source_addrs", sa.Text(), nullable=False),
        sa.Column("source_instance_id", sa.String(36), nullable=True),
        sa.Column("source_instance_name", sa.String(255), nullable=False),
        sa.Column("source_password_encrypted", sa.Text(), nullable=True),
        sa.Column("source_cluster", sa.Boolean(), nullable=False),
        sa.Column("target_cluster", sa.Boolean(), nullable=False),
        sa.Column("bandwidth_limit_mb", sa.Integer(), nullable=True),
        sa.Column("replication_id", sa.String(64), nullable=True),
        sa.Column("applied_offset", sa.BigInteger(), nullable=True),
        sa.Column("source_offset", sa.BigInteger(), nullable=True),
        sa.Column("lag_ms", sa.BigInteger(), nullable=True),
        sa.Column("resyncs_partial", sa.Integer(), nullable=False),
        sa.Column("resyncs_full", sa.Integer(), nullable=False),
        sa.Column("full_progress", sa.Float(), nullable=False),
        sa.Column("sync_stop_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sync_stop_error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["migration_tasks.task_id"],
            name=op.f("fk_online_migrations_task_id_migration_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_online_migrations")),
    )


def downgrade() -> None:
    op.drop_table("online_migrations")
