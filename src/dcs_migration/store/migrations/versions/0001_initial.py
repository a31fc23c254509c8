"""Initial schema: access keys, instances, migration tasks, task files, task logs.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("ak", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("sk_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("revoked_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("ak", name=op.f("pk_access_keys")),
    )
    op.create_index(op.f("ix_access_keys_project_id"), "access_keys", ["project_id"])

    op.create_table(
        "instances",
        sa.Column("instance_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("instance_type", sa.String(16), nullable=False),
        sa.Column("addrs", sa.Text(), nullable=False),
        sa.Column("username", sa.String(255), nullable=True),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column("engine", sa.String(32), nullable=False),
        sa.Column("engine_version", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", name=op.f("pk_instances")),
    )
    op.create_index(op.f("ix_instances_project_id"), "instances", ["project_id"])

    big = sa.BigInteger()
    op.create_table(
        "migration_tasks",
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("task_name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("migration_type", sa.String(32), nullable=False),
        sa.Column("migration_method", sa.String(32), nullable=False),
        sa.Column("file_source", sa.String(32), nullable=False),
        sa.Column("bucket_name", sa.String(255), nullable=True),
        sa.Column("backup_id", sa.String(64), nullable=True),
        sa.Column("network_type", sa.String(16), nullable=True),
        sa.Column("target_instance_id", sa.String(36), nullable=False),
        sa.Column("target_db", sa.Integer(), nullable=True),
        sa.Column("target_password_encrypted", sa.Text(), nullable=True),
        sa.Column("target_instance_name", sa.String(255), nullable=False),
        sa.Column("target_instance_addrs", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("resume_mode", sa.String(32), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("started_at", _time(), nullable=True),
        sa.Column("finished_at", _time(), nullable=True),
        sa.Column("released_at", _time(), nullable=True),
        sa.Column("stop_requested", sa.Boolean(), nullable=False),
        sa.Column("bytes_total", big, nullable=False),
        sa.Column("bytes_read", big, nullable=False),
        sa.Column("keys_written", big, nullable=False),
        sa.Column("keys_skipped_expired", big, nullable=False),
        sa.Column("keys_skipped_existing", big, nullable=False),
        sa.Column("keys_skipped_module", big, nullable=False),
        sa.Column("commands_replayed", big, nullable=False),
        sa.Column("ops_per_second", sa.Float(), nullable=False),
        sa.Column("input_kbps", sa.Float(), nullable=False),
        sa.Column("target_dbsize", big, nullable=True),
        sa.Column("source_dbsize", big, nullable=True),
        sa.Column("current_file", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_migration_tasks")),
    )
    op.create_index(op.f("ix_migration_tasks_project_id"), "migration_tasks", ["project_id"])
    op.create_index(
        "ix_migration_tasks_project_created", "migration_tasks", ["project_id", "created_at"]
    )
    op.create_index("ix_migration_tasks_status", "migration_tasks", ["status"])

    op.create_table(
        "migration_task_files",
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("size_text", sa.String(64), nullable=True),
        sa.Column("update_at", sa.String(64), nullable=True),
        sa.Column("size_bytes", big, nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["migration_tasks.task_id"],
            name=op.f("fk_migration_task_files_task_id_migration_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "position", name=op.f("pk_migration_task_files")),
    )

    op.create_table(
        "migration_task_logs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("task_id", sa.String(36), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("log_level", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("log_code", sa.String(32), nullable=False),
        sa.Column("keyword", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["migration_tasks.task_id"],
            name=op.f("fk_migration_task_logs_task_id_migration_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_migration_task_logs")),
    )
    op.create_index(op.f("ix_migration_task_logs_task_id"), "migration_task_logs", ["task_id"])
    op.create_index(
        "ix_migration_task_logs_task_level", "migration_task_logs", ["task_id", "log_level"]
    )


def downgrade() -> None:
    op.drop_table("migration_task_logs")
    op.drop_table("migration_task_files")
    op.drop_table("migration_tasks")
    op.drop_table("instances")
    op.drop_table("access_keys")
