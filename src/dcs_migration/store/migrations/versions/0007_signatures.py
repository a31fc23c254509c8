"""The signatures of accepted calls that change something, so that each is accepted once
(a replayed request is refused) by every API process that shares the database.

Revision ID: 0007_signatures
Revises: 0006_bucket_grants
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_signatures"
down_revision: str | None = "0006_bucket_grants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accepted_signatures",
        sa.Column("signature", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("signature", name=op.f("pk_accepted_signatures")),
    )
    op.create_index(
        op.f("ix_accepted_signatures_expires_at"), "accepted_signatures", ["expires_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_accepted_signatures_expires_at"), table_name="accepted_signatures")
    op.drop_table("accepted_signatures")
