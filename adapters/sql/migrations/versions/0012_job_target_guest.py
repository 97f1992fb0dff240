"""Jobs name their target guest in indexed columns: the last job on a VM is a lookup, not a scan

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("target_cluster", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("target_vmid", sa.Integer(), nullable=True))
        batch.create_index("ix_jobs_target_guest", ["target_cluster", "target_vmid", "created_at"], unique=False)
    jobs = sa.table("jobs", sa.column("id", sa.String), sa.column("target", sa.JSON),
                    sa.column("target_cluster", sa.String), sa.column("target_vmid", sa.Integer))
    connection = op.get_bind()
    for job_id, target in connection.execute(sa.select(jobs.c.id, jobs.c.target)).all():
        target = target or {}
        vmid = target.get("vmid")
        connection.execute(jobs.update().where(jobs.c.id == job_id).values(
            target_cluster=str(target["cluster"])[:64] if target.get("cluster") else None,
            target_vmid=vmid if isinstance(vmid, int) else None))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_target_guest")
        batch.drop_column("target_vmid")
        batch.drop_column("target_cluster")
