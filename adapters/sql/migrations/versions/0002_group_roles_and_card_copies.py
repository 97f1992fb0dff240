"""Azure AD group roles per company; copies of approval cards

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # JSON columns take no server default on MySQL: add them nullable, fill, then tighten
    with op.batch_alter_table("companies") as batch:
        batch.add_column(sa.Column("directory_groups", sa.JSON(), nullable=True))
    op.execute("UPDATE companies SET directory_groups = '[]'")
    with op.batch_alter_table("companies") as batch:
        batch.alter_column("directory_groups", existing_type=sa.JSON(), nullable=False)

    with op.batch_alter_table("approval_requests") as batch:
        batch.add_column(sa.Column("copies", sa.JSON(), nullable=True))
    op.execute("UPDATE approval_requests SET copies = '[]'")
    with op.batch_alter_table("approval_requests") as batch:
        batch.alter_column("copies", existing_type=sa.JSON(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("approval_requests") as batch:
        batch.drop_column("copies")
    with op.batch_alter_table("companies") as batch:
        batch.drop_column("directory_groups")
