"""Known channels: the latest reference to each channel the bot was written to (Teams approvers channels)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapters.sql.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "known_channels",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("workspace_id", sa.String(length=128), nullable=False),
        sa.Column("channel_id", sa.String(length=255), nullable=False),
        sa.Column("reference", sa.JSON(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_known_channels")),
        sa.UniqueConstraint("platform", "workspace_id", "channel_id", name="uq_known_channels_key"),
    )
    op.create_index(op.f("ix_known_channels_channel_id"), "known_channels", ["channel_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_known_channels_channel_id"), table_name="known_channels")
    op.drop_table("known_channels")
