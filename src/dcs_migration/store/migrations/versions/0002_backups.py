"""Backups made by the service, their files, and restores.

Revision ID: 0002_backups
Revises: 0001_initial
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_backups"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "backups",
        sa.Column("backup_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("backup_name", sa.String(255), nullable=False),
        sa.Column("backup_type", sa.String(16), nullable=False),
        sa.Column("backup_format", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("error_code", sa.String(32), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("remark", sa.Text(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("execution_at", _time(), nullable=True),
        sa.Column("finished_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("backup_id", name=op.f("pk_backups")),
    )
    op.create_index(op.f("ix_backups_project_id"), "backups", ["project_id"])
    op.create_index("ix_backups_instance_created", "backups", ["instance_id", "created_at"])

    op.create_table(
        "backup_files",
        sa.Column("backup_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.String(255), nullable=False),
        sa.Column("object_key", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("source_addr", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(
            ["backup_id"],
            ["backups.backup_id"],
            name=op.f("fk_backup_files_backup_id_backups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("backup_id", "position", name=op.f("pk_backup_files")),
    )

    op.create_table(
        "restores",
        sa.Column("restore_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("backup_id", sa.String(36), nullable=False),
        sa.Column("restore_name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error_code", sa.String(32), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("remark", sa.Text(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("restore_id", name=op.f("pk_restores")),
    )
    op.create_index(op.f("ix_restores_project_id"), "restores", ["project_id"])
    op.create_index("ix_restores_instance_created", "restores", ["instance_id", "created_at"])


def downgrade() -> None:
    op.drop_table("restores")
    op.drop_table("backup_files")
    op.drop_table("backups")
