"""job tags and notes (jobs.tags, jobs.notes, job_tags) and the indexes of the list filters

Revision ID: b1f7a2c4d9e0
Revises: 5d1e0c7a9b34
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "b1f7a2c4d9e0"
down_revision = "5d1e0c7a9b34"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "job_tags",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_tags_job_id_jobs"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_job_tags_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "tag", name=op.f("pk_job_tags")),
    )
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_tags_user_id_tag_job_id"), ["user_id", "tag", "job_id"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        # Existing rows have neither (NULL: no tags, no notes).
        batch_op.add_column(sa.Column("tags", JSON, nullable=True))
        batch_op.add_column(sa.Column("notes", sa.Text(), nullable=True))
        # (sweep_id, id) replaces (sweep_id): a sweep's jobs newest first without a sort.
        batch_op.drop_index(batch_op.f("ix_jobs_sweep_id"))
        batch_op.create_index(batch_op.f("ix_jobs_sweep_id_id"), ["sweep_id", "id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_jobs_user_id_name"),
            ["user_id", "name"],
            unique=False,
            postgresql_ops={"name": "varchar_pattern_ops"},
        )
        batch_op.create_index(batch_op.f("ix_jobs_user_id_created_at"), ["user_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_user_id_created_at"))
        batch_op.drop_index(batch_op.f("ix_jobs_user_id_name"))
        batch_op.drop_index(batch_op.f("ix_jobs_sweep_id_id"))
        batch_op.create_index(batch_op.f("ix_jobs_sweep_id"), ["sweep_id"], unique=False)
        batch_op.drop_column("notes")
        batch_op.drop_column("tags")
    with op.batch_alter_table("job_tags", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_tags_user_id_tag_job_id"))
    op.drop_table("job_tags")
