"""Every Proxmox task of a job is kept: backup history names who asked for each node's run of a schedule

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_tasks",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("upid", sa.String(length=300), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "upid"),
    )
    op.create_index("ix_job_tasks_upid", "job_tasks", ["upid", "company_id"], unique=False)
    # the task each job followed last is all that was kept until now
    op.execute("INSERT INTO job_tasks (job_id, upid, company_id) SELECT id, upid, company_id FROM jobs "
               "WHERE upid IS NOT NULL")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_upid")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.create_index("ix_jobs_upid", ["upid", "company_id"], unique=False)
    op.drop_index("ix_job_tasks_upid", table_name="job_tasks")
    op.drop_table("job_tasks")
