"""Backups: each company's backup policy, and which company each backup seen belongs to

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from adapters.sql.tables import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # JSON columns take no server default on MySQL: add it nullable, fill, then tighten
    with op.batch_alter_table("companies") as batch:
        batch.add_column(sa.Column("backup_policy", sa.JSON(), nullable=True))
    op.execute("UPDATE companies SET backup_policy = '{}'")
    with op.batch_alter_table("companies") as batch:
        batch.alter_column("backup_policy", existing_type=sa.JSON(), nullable=False)

    op.create_table(
        "backup_owners",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("volid", sa.String(length=255), nullable=False),
        sa.Column("vmid", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("seen_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], name=op.f("fk_backup_owners_cluster_id_clusters"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"],
                                name=op.f("fk_backup_owners_company_id_companies"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backup_owners")),
        sa.UniqueConstraint("cluster_id", "volid", name="uq_backup_owners_cluster_volid"),
    )
    op.create_index(op.f("ix_backup_owners_company_id"), "backup_owners", ["company_id"], unique=False)


def downgrade() -> None:
    # dropping the table drops its index too; MariaDB refuses to drop an index a foreign key needs
    op.drop_table("backup_owners")
    with op.batch_alter_table("companies") as batch:
        batch.drop_column("backup_policy")
