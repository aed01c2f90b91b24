"""fair scheduling: jobs.priority, users.last_claimed_at, the claim_next index

Revision ID: 32fc89b26416
Revises: ee43d152f401
Create Date: 2026-11-30 19:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import service.core.db

revision = "32fc89b26416"
down_revision = "ee43d152f401"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        # Existing rows (and rows written by an older API during a rolling upgrade) are normal.
        batch_op.add_column(sa.Column("priority", sa.String(length=8), server_default="normal", nullable=False))
        batch_op.create_index(
            batch_op.f("ix_jobs_user_id_status_priority_id"), ["user_id", "status", "priority", "id"], unique=False
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_claimed_at", service.core.db.UTCDateTime(timezone=True), nullable=True),
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("last_claimed_at")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_user_id_status_priority_id"))
        batch_op.drop_column("priority")
