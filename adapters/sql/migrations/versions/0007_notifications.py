"""Notifications: channel subscriptions per company and topic, and the outbox of messages to send them

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapters.sql.tables import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("topic", sa.Enum("backups", "jobs", "approvals", "updates", name="subscription_topic",
                                   native_enum=False, length=32), nullable=False),
        sa.Column("channel", sa.String(length=300), nullable=False),
        sa.Column("vm", sa.String(length=64), nullable=True),
        sa.Column("only_failures", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.Enum("active", "broken", name="subscription_state", native_enum=False, length=32),
                  nullable=False),
        sa.Column("problem", sa.String(length=300), nullable=True),
        sa.Column("last_delivery_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_subscriptions_company_id_companies"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name=op.f("fk_subscriptions_created_by_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_index(op.f("ix_subscriptions_company_id"), "subscriptions", ["company_id"], unique=False)
    op.create_table(
        "notify_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=300), nullable=False),
        sa.Column("event_key", sa.String(length=255), nullable=False),
        sa.Column("reply", sa.JSON(), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("failed", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("not_before", UtcDateTime(), nullable=False),
        sa.Column("state", sa.Enum("pending", "sent", "dropped", name="outbox_state", native_enum=False, length=32),
                  nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", UtcDateTime(), nullable=True),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["subscription_id"], ["subscriptions.id"],
                                name=op.f("fk_notify_outbox_subscription_id_subscriptions"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notify_outbox")),
        sa.UniqueConstraint("subscription_id", "event_key", name="uq_notify_outbox_event"),
    )
    op.create_index(op.f("ix_notify_outbox_channel"), "notify_outbox", ["channel"], unique=False)
    op.create_index(op.f("ix_notify_outbox_state"), "notify_outbox", ["state"], unique=False)


def downgrade() -> None:
    op.drop_table("notify_outbox")
    op.drop_table("subscriptions")
