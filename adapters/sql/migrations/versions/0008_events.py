"""Events from clusters (webhook and poller lease per cluster, poll cursors, events seen); declared subscriptions

Revision ID: 0008_events
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapters.sql.tables import UtcDateTime

revision = "0008_events"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_sources",
        sa.Column("cluster_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=True),
        sa.Column("url", sa.String(length=500), nullable=True),
        sa.Column("installed_at", UtcDateTime(), nullable=True),
        sa.Column("last_push_at", UtcDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], name=op.f("fk_event_sources_cluster_id_clusters"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cluster_id", name=op.f("pk_event_sources")),
    )
    op.create_table(
        "event_cursors",
        sa.Column("cluster_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("since", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], name=op.f("fk_event_cursors_cluster_id_clusters"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("cluster_id", "node", name=op.f("pk_event_cursors")),
    )
    op.create_table(
        "event_seen",
        sa.Column("event_key", sa.String(length=255), nullable=False),
        sa.Column("seen_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_key", name=op.f("pk_event_seen")),
    )
    op.create_index(op.f("ix_event_seen_seen_at"), "event_seen", ["seen_at"], unique=False)
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("declared", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("declared")
    op.drop_table("event_seen")
    op.drop_table("event_cursors")
    op.drop_table("event_sources")
