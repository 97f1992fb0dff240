"""Jobs remember which in-process queue holds them

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # nullable: jobs on a shared Redis queue have no owner, and older rows had none recorded
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("queue_owner", sa.String(length=96), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queue_owner")
