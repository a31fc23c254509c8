"""Bucket grants: the buckets each project may read, granted by the operator.

Revision ID: 0006_bucket_grants
Revises: 0005_addresses
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_bucket_grants"
down_revision: str | None = "0005_addresses"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bucket_grants",
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("bucket_name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "bucket_name", name=op.f("pk_bucket_grants")),
    )


def downgrade() -> None:
    op.drop_table("bucket_grants")
