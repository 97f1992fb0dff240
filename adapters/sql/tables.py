"""Tables and the imperative mapping of core dataclasses onto them (SQLAlchemy 2).

The same schema runs on SQLite (embedded default) and MySQL/MariaDB through pymysql;
Alembic's migrations in ``migrations/`` create it, and a test checks they agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import registry, relationship
from sqlalchemy.types import TypeDecorator

from core import model


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; stored naive, with microseconds on MySQL."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


def _enum(enum_cls: type[Any], name: str) -> Enum:
    # store the values ("company_admin"), not the Python names, and no native ENUM type
    return Enum(enum_cls, name=name, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


# Index names are explicit so that migrations compare equal on every backend.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

companies = Table(
    "companies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("slug", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("email_domains", JSON, nullable=False),
    Column("quotas", JSON, nullable=False),
    Column("approval_policy", JSON, nullable=False),
    Column("directory_groups", JSON, nullable=False, default=list),
    Column("backup_policy", JSON, nullable=False, default=dict),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("role", _enum(model.Role, "role"), nullable=False),
    Column("company_id", Integer, ForeignKey("companies.id"), nullable=True, index=True),
    Column("active", Boolean, nullable=False, default=True),
)

user_company_assignments = Table(
    "user_company_assignments",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("company_id", Integer, ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True),
)

chat_identities = Table(
    "chat_identities",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("platform", String(16), nullable=False),
    Column("workspace_id", String(128), nullable=False),
    Column("platform_user_id", String(128), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    UniqueConstraint("platform", "workspace_id", "platform_user_id", name="uq_chat_identities_key"),
)

# Where the bot was last written to, per channel: a Teams channel can only be posted into with the
# serviceUrl and tenant of an activity from it. Not a company's: provisioning names which channel a company uses.
known_channels = Table(
    "known_channels",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("platform", String(16), nullable=False),
    Column("workspace_id", String(128), nullable=False),
    Column("channel_id", String(255), nullable=False, index=True),
    Column("reference", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    UniqueConstraint("platform", "workspace_id", "channel_id", name="uq_known_channels_key"),
)

clusters = Table(
    "clusters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("api_urls", JSON, nullable=False),
    Column("token_id", String(200), nullable=False),
    Column("token_secret_encrypted", Text, nullable=False),
    Column("tls_mode", _enum(model.TlsMode, "tls_mode"), nullable=False),
    Column("tls_value", String(500), nullable=True),
    Column("token_secret_env", String(200), nullable=True),
    Column("shared_templates", JSON, nullable=False),
)

pool_bindings = Table(
    "pool_bindings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("company_id", Integer, ForeignKey("companies.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("cluster_id", Integer, ForeignKey("clusters.id", ondelete="CASCADE"), nullable=False),
    Column("pool", String(64), nullable=False),
    # a pool belongs to one company only: two owners would break tenant isolation
    UniqueConstraint("cluster_id", "pool", name="uq_pool_bindings_cluster_pool"),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False, index=True),
    Column("actor", String(254), nullable=False, index=True),
    Column("company_id", Integer, nullable=True, index=True),
    Column("action", String(64), nullable=False),
    Column("target", String(300), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("detail", JSON, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("request_id", String(191), nullable=False, unique=True),
    Column("company_id", Integer, nullable=False, index=True),
    Column("actor_user_id", Integer, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("state", _enum(model.JobState, "job_state"), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("conversation", JSON, nullable=False),
    Column("summary", String(300), nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("heartbeat_at", UtcDateTime, nullable=True),
    Column("upid", String(300), nullable=True),
    Column("progress", Text, nullable=False),
    Column("result", Text, nullable=False),
    Column("approval_id", String(32), nullable=True),
    Column("message_ref", JSON, nullable=False),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("queue_owner", String(96), nullable=True),
    # the guest of ``target``, as columns: "the last job on this VM" (vm status) is then an index
    # lookup, not a scan of every job there ever was (kept in step by adapters.sql.uow)
    Column("target_cluster", String(64), nullable=True),
    Column("target_vmid", Integer, nullable=True),
    Index("ix_jobs_target_guest", "target_cluster", "target_vmid", "created_at"),
)

def job_guest_columns(target: dict[str, Any]) -> dict[str, Any]:
    """The indexed copy of a job's target guest (``target_cluster``, ``target_vmid``).

    A target may gain its VMID later (a created VM): the copy follows it.
    """
    vmid, cluster = target.get("vmid"), target.get("cluster")
    return {"target_cluster": str(cluster)[:64] if cluster else None,
            "target_vmid": vmid if isinstance(vmid, int) else None}


# every Proxmox task a job started: ``jobs.upid`` holds only the one it follows now, and a job of
# several steps (a schedule run, one vzdump per node) starts several. Backup history finds the jobs
# behind the tasks it lists by UPID, within the caller's companies: with the company in the index,
# a database never prefers scanning a company's jobs
job_tasks = Table(
    "job_tasks",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("upid", String(300), primary_key=True),
    Column("company_id", Integer, nullable=False),
    Index("ix_job_tasks_upid", "upid", "company_id"),
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("company_id", Integer, nullable=False, index=True),
    Column("requester_user_id", Integer, nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", JSON, nullable=False),
    Column("params", JSON, nullable=False),
    Column("preview", JSON, nullable=False),
    Column("state", _enum(model.ApprovalState, "approval_state"), nullable=False, index=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("conversation", JSON, nullable=False),
    Column("decided_by_user_id", Integer, nullable=True),
    Column("decided_at", UtcDateTime, nullable=True),
    Column("decision_note", Text, nullable=False),
    Column("job_id", String(32), nullable=True),
    Column("request_id", String(191), nullable=False, unique=True),
    Column("message_ref", JSON, nullable=False),
    Column("copies", JSON, nullable=False, default=list),
)

# A company's address ranges; only provisioning writes them.
ip_ranges = Table(
    "ip_ranges",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("company_id", Integer, ForeignKey("companies.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("cluster_id", Integer, ForeignKey("clusters.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("cidr", String(64), nullable=False),
    Column("gateway", String(64), nullable=True),
    Column("vlan", Integer, nullable=True),
    Column("bridge", String(64), nullable=True),
    Column("vnet", String(64), nullable=True),
    Column("dns", JSON, nullable=False),
    Column("search_domain", String(253), nullable=True),
    Column("reserved", JSON, nullable=False),
    UniqueConstraint("company_id", "name", name="uq_ip_ranges_company_name"),
)

# Who holds which address. The two unique keys are what makes a double assignment impossible, whatever
# the number of processes allocating at once: one address per range, one address per NIC of a guest.
ip_assignments = Table(
    "ip_assignments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("range_id", Integer, ForeignKey("ip_ranges.id", ondelete="CASCADE"), nullable=False),
    Column("company_id", Integer, nullable=False, index=True),
    Column("address", String(64), nullable=False),
    Column("number", BigInteger, nullable=False),
    Column("cluster_id", Integer, nullable=False),
    Column("vmid", Integer, nullable=True),
    Column("nic", Integer, nullable=False),
    Column("assigned_by", String(254), nullable=False),
    Column("assigned_at", UtcDateTime, nullable=False),
    UniqueConstraint("range_id", "number", name="uq_ip_assignments_range_number"),
    UniqueConstraint("cluster_id", "vmid", "nic", name="uq_ip_assignments_guest_nic"),
)

# Whose each backup is: the company that owned its VM when pvebot first saw it. Its VMID cannot say,
# once the VM is deleted and the VMID given to another company's new guest.
backup_owners = Table(
    "backup_owners",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster_id", Integer, ForeignKey("clusters.id", ondelete="CASCADE"), nullable=False),
    Column("volid", String(255), nullable=False),
    Column("vmid", Integer, nullable=False),
    Column("company_id", Integer, ForeignKey("companies.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("seen_at", UtcDateTime, nullable=False),
    UniqueConstraint("cluster_id", "volid", name="uq_backup_owners_cluster_volid"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # NULL: a provider channel that hears about every company
    Column("company_id", Integer, ForeignKey("companies.id", ondelete="CASCADE"), nullable=True, index=True),
    Column("topic", _enum(model.Topic, "subscription_topic"), nullable=False),
    Column("channel", String(300), nullable=False),
    Column("vm", String(64), nullable=True),
    Column("only_failures", Boolean, nullable=False),
    Column("created_by", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("state", _enum(model.SubscriptionState, "subscription_state"), nullable=False),
    Column("problem", String(300), nullable=True),
    Column("last_delivery_at", UtcDateTime, nullable=True),
    # declared by the provisioning file, which adds and removes these (never those typed in chat)
    Column("declared", Boolean, nullable=False, server_default=false()),
)

# One row per message to send: written in the transaction that records the event, sent by
# whichever process drains the outbox, marked sent in one conditional UPDATE.
notify_outbox = Table(
    "notify_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("subscription_id", Integer, ForeignKey("subscriptions.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(300), nullable=False, index=True),
    Column("event_key", String(255), nullable=False),
    Column("reply", JSON, nullable=False),
    Column("summary", String(300), nullable=False),
    Column("failed", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("state", _enum(model.OutboxState, "outbox_state"), nullable=False, index=True),
    Column("attempts", Integer, nullable=False),
    Column("claimed_until", UtcDateTime, nullable=True),
    Column("sent_at", UtcDateTime, nullable=True),
    UniqueConstraint("subscription_id", "event_key", name="uq_notify_outbox_event"),
)

# Per cluster: the webhook pvebot installed (its secret encrypted like an API token) and the poller's
# lease, taken by one conditional UPDATE so one process polls a cluster at a time.
event_sources = Table(
    "event_sources",
    metadata,
    Column("cluster_id", Integer, ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("secret_encrypted", Text, nullable=True),
    Column("url", String(500), nullable=True),
    Column("installed_at", UtcDateTime, nullable=True),
    Column("last_push_at", UtcDateTime, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
)

# Where each node's task-history poll got to: the start time (epoch) the next poll reads from.
event_cursors = Table(
    "event_cursors",
    metadata,
    Column("cluster_id", Integer, ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("node", String(64), primary_key=True),
    Column("since", Integer, nullable=False),
)

# The Proxmox VE version (pve-manager) each node ran when last checked: a change is announced once
node_versions = Table(
    "node_versions",
    metadata,
    Column("cluster_id", Integer, ForeignKey("clusters.id", ondelete="CASCADE"), primary_key=True,
           autoincrement=False),
    Column("node", String(64), primary_key=True),
    Column("version", String(64), nullable=False),
)

# Events recorded already (``vzdump:<cluster>:<node>:<upid>``): a push and a pull of one run, or two
# polls that both list it, read its log once. The outbox's own unique key is what makes delivery once.
event_seen = Table(
    "event_seen",
    metadata,
    Column("event_key", String(255), primary_key=True),
    Column("seen_at", UtcDateTime, nullable=False, index=True),
)

# Messages for terminal sessions: workers anywhere append, the shell that owns the
# conversation reads them in order. Append-only; an edit is a new row for the same message.
shell_outbox = Table(
    "shell_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation", String(128), nullable=False, index=True),
    Column("message_id", String(64), nullable=False),
    Column("body", JSON, nullable=False),
    Column("at", UtcDateTime, nullable=False),
)

# One row: a number every write to users, identities, companies, clusters or pool bindings raises, in
# the same transaction, so that each process can keep what it read of them until the number moves.
directory_version = Table(
    "directory_version",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)

# pvebot's SSH key per cluster (the private half encrypted like the API token) and the nodes it reaches
ssh_keys = Table(
    "ssh_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster_id", Integer, ForeignKey("clusters.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("private_key_encrypted", Text, nullable=False),
    Column("public_key", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("state", _enum(model.SshKeyState, "ssh_key_state"), nullable=False),
    Column("comment", String(200), nullable=False),
)

ssh_nodes = Table(
    "ssh_nodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("cluster_id", Integer, ForeignKey("clusters.id", ondelete="CASCADE"), nullable=False),
    Column("node", String(64), nullable=False),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("user", String(64), nullable=False),
    Column("host_key", String(64), nullable=True),
    Column("keys_file", String(255), nullable=False),
    Column("health", String(200), nullable=True),
    Column("checked_at", UtcDateTime, nullable=True),
    UniqueConstraint("cluster_id", "node", name="uq_ssh_nodes_cluster_node"),
)

mapper_registry = registry(metadata=metadata)
_mapped = False


def start_mappers() -> None:
    """Map the core dataclasses onto the tables, once per process."""
    global _mapped
    if _mapped:
        return
    mapper_registry.map_imperatively(model.Company, companies)
    mapper_registry.map_imperatively(
        model.User,
        users,
        properties={
            "assigned_companies": relationship(
                model.Company, secondary=user_company_assignments, lazy="selectin", order_by=companies.c.slug
            )
        },
    )
    mapper_registry.map_imperatively(model.ChatIdentity, chat_identities)
    mapper_registry.map_imperatively(model.KnownChannel, known_channels)
    mapper_registry.map_imperatively(model.Cluster, clusters)
    mapper_registry.map_imperatively(model.PoolBinding, pool_bindings)
    mapper_registry.map_imperatively(model.AuditEvent, audit_events)
    mapper_registry.map_imperatively(model.Job, jobs)
    mapper_registry.map_imperatively(model.ApprovalRequest, approval_requests)
    mapper_registry.map_imperatively(model.IpRange, ip_ranges)
    mapper_registry.map_imperatively(model.IpAssignment, ip_assignments)
    mapper_registry.map_imperatively(model.BackupOwner, backup_owners)
    mapper_registry.map_imperatively(model.Subscription, subscriptions)
    mapper_registry.map_imperatively(model.OutboxMessage, notify_outbox)
    mapper_registry.map_imperatively(model.SshKey, ssh_keys)
    mapper_registry.map_imperatively(model.SshNode, ssh_nodes)
    _mapped = True
