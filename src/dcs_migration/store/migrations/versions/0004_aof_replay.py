"""AOF replay as Redis loads an AOF: a task may skip unknown commands, and counts the
commands the target refused or did not know.

Revision ID: 0004_aof_replay
Revises: 0003_checkpoints
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_aof_replay"
down_revision: str | None = "0003_checkpoints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("migration_tasks") as table:
        table.add_column(
            sa.Column(
                "skip_unknown_commands", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        table.add_column(
            sa.Column("commands_refused", sa.BigInteger(), nullable=False, server_default="0")
        )
        table.add_column(
            sa.Column(
                "commands_skipped_unknown", sa.BigInteger(), nullable=False, server_default="0"
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("migration_tasks") as table:
        table.drop_column("commands_skipped_unknown")
        table.drop_column("commands_refused")
        table.drop_column("skip_unknown_commands")
