"""Units of distributed work and their runs: what each Celery worker holds (a lease),
how far each input of a task got (a checkpoint per unit), and where each run ran.

Revision ID: 0008_work_units
Revises: 0007_signatures
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_work_units"
down_revision: str | None = "0007_signatures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    "bytes_total",
    "bytes_read",
    "keys_written",
    "keys_skipped_expired",
    "keys_skipped_existing",
    "keys_skipped_module",
    "commands_replayed",
    "commands_refused",
    "commands_skipped_unknown",
)


def upgrade() -> None:
    op.create_table(
        "work_units",
        sa.Column("work_kind", sa.String(16), nullable=False),
        sa.Column("work_id", sa.String(36), nullable=False),
        sa.Column("unit_index", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("input_name", sa.Text(), nullable=False),
        sa.Column("input_fingerprint", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatches", sa.Integer(), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("checkpoint_records", sa.BigInteger(), nullable=True),
        sa.Column("checkpoint_keys", sa.BigInteger(), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("work_kind", "work_id", "unit_index", name=op.f("pk_work_units")),
    )
    op.create_index("ix_work_units_state", "work_units", ["state", "lease_expires_at"])
    op.create_table(
        "unit_runs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("work_kind", sa.String(16), nullable=False),
        sa.Column("work_id", sa.String(36), nullable=False),
        sa.Column("unit_index", sa.Integer(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_unit_runs")),
    )
    op.create_index("ix_unit_runs_work", "unit_runs", ["work_kind", "work_id", "unit_index"])


def downgrade() -> None:
    op.drop_index("ix_unit_runs_work", table_name="unit_runs")
    op.drop_table("unit_runs")
    op.drop_index("ix_work_units_state", table_name="work_units")
    op.drop_table("work_units")
