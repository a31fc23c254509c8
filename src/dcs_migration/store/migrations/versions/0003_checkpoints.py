"""Checkpoints of migration tasks, and the fingerprint of their inputs, for resuming.

Revision ID: 0003_checkpoints
Revises: 0002_backups
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_checkpoints"
down_revision: str | None = "0002_backups"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("migration_tasks") as table:
        table.add_column(sa.Column("checkpoint_input", sa.Integer(), nullable=True))
        table.add_column(sa.Column("checkpoint_records", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("checkpoint_keys", sa.BigInteger(), nullable=True))
        table.add_column(sa.Column("inputs_fingerprint", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migration_tasks") as table:
        table.drop_column("inputs_fingerprint")
        table.drop_column("checkpoint_keys")
        table.drop_column("checkpoint_records")
        table.drop_column("checkpoint_input")
