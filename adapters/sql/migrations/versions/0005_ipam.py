"""Company IP ranges and the addresses pvebot assigned from them

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapters.sql.tables import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ip_ranges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("gateway", sa.String(length=64), nullable=True),
        sa.Column("vlan", sa.Integer(), nullable=True),
        sa.Column("bridge", sa.String(length=64), nullable=True),
        sa.Column("vnet", sa.String(length=64), nullable=True),
        sa.Column("dns", sa.JSON(), nullable=False),
        sa.Column("search_domain", sa.String(length=253), nullable=True),
        sa.Column("reserved", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_ip_ranges_company_id_companies"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], name=op.f("fk_ip_ranges_cluster_id_clusters"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_ranges")),
        sa.UniqueConstraint("company_id", "name", name="uq_ip_ranges_company_name"),
    )
    op.create_index(op.f("ix_ip_ranges_company_id"), "ip_ranges", ["company_id"], unique=False)
    op.create_table(
        "ip_assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("range_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("vmid", sa.Integer(), nullable=True),
        sa.Column("nic", sa.Integer(), nullable=False),
        sa.Column("assigned_by", sa.String(length=254), nullable=False),
        sa.Column("assigned_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["range_id"], ["ip_ranges.id"], name=op.f("fk_ip_assignments_range_id_ip_ranges"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ip_assignments")),
        sa.UniqueConstraint("range_id", "number", name="uq_ip_assignments_range_number"),
        sa.UniqueConstraint("cluster_id", "vmid", "nic", name="uq_ip_assignments_guest_nic"),
    )
    op.create_index(op.f("ix_ip_assignments_company_id"), "ip_assignments", ["company_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_ip_assignments_company_id"), table_name="ip_assignments")
    op.drop_table("ip_assignments")
    op.drop_index(op.f("ix_ip_ranges_company_id"), table_name="ip_ranges")
    op.drop_table("ip_ranges")
