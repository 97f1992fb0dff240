"""SSH to clusters: pvebot's key per cluster (encrypted) and each node's address and pinned host key

Revision ID: 0009_ssh
Revises: 0008_events
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapters.sql.tables import UtcDateTime

revision = "0009_ssh"
down_revision = "0008_events"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ssh_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("private_key_encrypted", sa.Text(), nullable=False),
        sa.Column("public_key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("state", sa.Enum("new", "active", "retired", name="ssh_key_state", native_enum=False, length=32),
                  nullable=False),
        sa.Column("comment", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], name=op.f("fk_ssh_keys_cluster_id_clusters"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssh_keys")),
    )
    op.create_index(op.f("ix_ssh_keys_cluster_id"), "ssh_keys", ["cluster_id"], unique=False)
    op.create_table(
        "ssh_nodes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("user", sa.String(length=64), nullable=False),
        sa.Column("host_key", sa.String(length=64), nullable=True),
        sa.Column("keys_file", sa.String(length=255), nullable=False),
        sa.Column("health", sa.String(length=200), nullable=True),
        sa.Column("checked_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], name=op.f("fk_ssh_nodes_cluster_id_clusters"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ssh_nodes")),
        sa.UniqueConstraint("cluster_id", "node", name="uq_ssh_nodes_cluster_node"),
    )


def downgrade() -> None:
    op.drop_table("ssh_nodes")
    op.drop_table("ssh_keys")
