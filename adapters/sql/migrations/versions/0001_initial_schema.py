"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import adapters.sql.tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "approval_requests",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("requester_user_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("preview", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "pending",
                "approved",
                "denied",
                "expired",
                "executed",
                "failed",
                name="approval_state",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("created_at", adapters.sql.tables.UtcDateTime(), nullable=False),
        sa.Column("expires_at", adapters.sql.tables.UtcDateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("conversation", sa.JSON(), nullable=False),
        sa.Column("decided_by_user_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", adapters.sql.tables.UtcDateTime(), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=191), nullable=False),
        sa.Column("message_ref", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approval_requests")),
        sa.UniqueConstraint("request_id", name=op.f("uq_approval_requests_request_id")),
    )
    with op.batch_alter_table("approval_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_approval_requests_company_id"), ["company_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_approval_requests_state"), ["state"], unique=False)

    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", adapters.sql.tables.UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=300), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_actor"), ["actor"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_events_company_id"), ["company_id"], unique=False)

    op.create_table(
        "clusters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("api_urls", sa.JSON(), nullable=False),
        sa.Column("token_id", sa.String(length=200), nullable=False),
        sa.Column("token_secret_encrypted", sa.Text(), nullable=False),
        sa.Column(
            "tls_mode",
            sa.Enum("ca_file", "fingerprint", "insecure", name="tls_mode", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("tls_value", sa.String(length=500), nullable=True),
        sa.Column("token_secret_env", sa.String(length=200), nullable=True),
        sa.Column("shared_templates", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clusters")),
        sa.UniqueConstraint("name", name=op.f("uq_clusters_name")),
    )
    op.create_table(
        "companies",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email_domains", sa.JSON(), nullable=False),
        sa.Column("quotas", sa.JSON(), nullable=False),
        sa.Column("approval_policy", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_companies")),
        sa.UniqueConstraint("slug", name=op.f("uq_companies_slug")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("request_id", sa.String(length=191), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("actor_user_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "queued", "running", "succeeded", "failed", "cancelled", name="job_state", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("created_at", adapters.sql.tables.UtcDateTime(), nullable=False),
        sa.Column("conversation", sa.JSON(), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("started_at", adapters.sql.tables.UtcDateTime(), nullable=True),
        sa.Column("finished_at", adapters.sql.tables.UtcDateTime(), nullable=True),
        sa.Column("heartbeat_at", adapters.sql.tables.UtcDateTime(), nullable=True),
        sa.Column("upid", sa.String(length=300), nullable=True),
        sa.Column("progress", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("approval_id", sa.String(length=32), nullable=True),
        sa.Column("message_ref", sa.JSON(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("request_id", name=op.f("uq_jobs_request_id")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_company_id"), ["company_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_state"), ["state"], unique=False)

    op.create_table(
        "shell_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("conversation", sa.String(length=128), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("at", adapters.sql.tables.UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shell_outbox")),
    )
    with op.batch_alter_table("shell_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shell_outbox_conversation"), ["conversation"], unique=False)

    op.create_table(
        "pool_bindings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"], ["clusters.id"], name=op.f("fk_pool_bindings_cluster_id_clusters"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_pool_bindings_company_id_companies"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pool_bindings")),
        sa.UniqueConstraint("cluster_id", "pool", name="uq_pool_bindings_cluster_pool"),
    )
    with op.batch_alter_table("pool_bindings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pool_bindings_company_id"), ["company_id"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "role",
            sa.Enum("super_admin", "company_admin", "salesperson", "user", name="role", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("company_id", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["companies.id"], name=op.f("fk_users_company_id_companies")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_company_id"), ["company_id"], unique=False)

    op.create_table(
        "chat_identities",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("workspace_id", sa.String(length=128), nullable=False),
        sa.Column("platform_user_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_chat_identities_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_identities")),
        sa.UniqueConstraint("platform", "workspace_id", "platform_user_id", name="uq_chat_identities_key"),
    )
    with op.batch_alter_table("chat_identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_identities_user_id"), ["user_id"], unique=False)

    op.create_table(
        "user_company_assignments",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("company_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_user_company_assignments_company_id_companies"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_user_company_assignments_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "company_id", name=op.f("pk_user_company_assignments")),
    )


def downgrade() -> None:
    # Drop whole tables, children first: a table takes its indexes with it, while dropping an
    # index on its own fails on MySQL/MariaDB when a foreign key needs it (error 1553).
    for table in (
        "user_company_assignments",
        "chat_identities",
        "users",
        "pool_bindings",
        "shell_outbox",
        "jobs",
        "companies",
        "clusters",
        "audit_events",
        "approval_requests",
    ):
        op.drop_table(table)
