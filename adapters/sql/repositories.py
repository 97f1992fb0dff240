"""Repositories over one SQLAlchemy session, every query filtered by the caller's scope.

A repository is built with a :class:`core.principal.Scope`; there is no method that
forgets it. Rows of other companies are simply not there, so services answer "not found".
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Update, bindparam, delete, false, func, insert, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from adapters.sql import tables as t
from core.errors import DuplicateRequest, NotFound
from core.model import (
    ApprovalRequest,
    ApprovalState,
    AuditEvent,
    BackupOwner,
    ChatIdentity,
    Cluster,
    Company,
    EventSource,
    IpAssignment,
    IpRange,
    Job,
    JobBrief,
    JobRoute,
    JobState,
    KnownChannel,
    OutboxMessage,
    OutboxState,
    PoolBinding,
    SshKey,
    SshNode,
    Subscription,
    SubscriptionState,
    Topic,
    User,
)
from core.principal import Scope


def _in_scope(column: Any, scope: Scope) -> ColumnElement[bool]:
    if scope.company_ids is None:
        return true()
    if not scope.company_ids:
        return false()
    return column.in_(sorted(scope.company_ids))  # type: ignore[no-any-return]


_Prebuilt = Select[Any] | Update


def _scoped_statement(
    statements: tuple[_Prebuilt, _Prebuilt], scope: Scope, **params: Any
) -> tuple[_Prebuilt, dict[str, Any]] | None:
    """A statement built once in two forms, (for every company, for the ``companies`` bound), fit to
    ``scope`` with its parameters; None when the scope holds no company (nothing to find)."""
    everything, within = statements
    if scope.company_ids is None:
        return everything, params
    if not scope.company_ids:
        return None
    return within, {**params, "companies": sorted(scope.company_ids)}


def _for_companies(stmt: _Prebuilt, column: Any) -> tuple[_Prebuilt, _Prebuilt]:
    return stmt, stmt.where(column.in_(bindparam("companies", expanding=True)))


def _check_scope(scope: Scope, company_id: int | None, what: str) -> None:
    if not scope.contains(company_id):
        raise NotFound(f"{what} not found")


def _add_once(session: Session, record: object) -> None:
    """Insert a record whose unique key (a request id, an identity, an email) may be taken concurrently."""
    session.add(record)
    try:
        session.flush()
    except IntegrityError as e:
        # the unit of work is spoilt now: the caller rolls back, then finds the stored record
        raise DuplicateRequest() from e


class _Scoped:
    def __init__(self, session: Session, scope: Scope) -> None:
        self._session = session
        self._scope = scope


class SqlCompanyRepository(_Scoped):
    def _select(self) -> Any:
        return select(Company).where(_in_scope(t.companies.c.id, self._scope))

    def get(self, company_id: int) -> Company | None:
        return self._session.scalars(self._select().where(t.companies.c.id == company_id)).first()

    def by_slug(self, slug: str) -> Company | None:
        return self._session.scalars(self._select().where(t.companies.c.slug == slug)).first()

    def list(self) -> builtins.list[Company]:
        return list(self._session.scalars(self._select().order_by(t.companies.c.slug)))

    def add(self, company: Company) -> None:
        if not self._scope.unrestricted:
            raise NotFound("company not found")
        self._session.add(company)
        self._session.flush()

    def lock(self, company_id: int) -> None:
        # a no-op UPDATE takes the row lock on MariaDB and the write lock on SQLite alike, where
        # SELECT … FOR UPDATE would be ignored; a second transaction waits here until the first ends
        self._session.execute(update(t.companies).where(t.companies.c.id == company_id,
                                                        _in_scope(t.companies.c.id, self._scope))
                              .values(id=t.companies.c.id))


class SqlUserRepository(_Scoped):
    def _select(self) -> Any:
        stmt = select(User).where(_in_scope(t.users.c.company_id, self._scope))
        if not self._scope.unrestricted:
            # a salesperson's other assignments are other companies' business
            assigned = User.assigned_companies.and_(_in_scope(t.companies.c.id, self._scope))  # type: ignore[attr-defined]
            stmt = stmt.options(selectinload(assigned))
        return stmt

    def get(self, user_id: int) -> User | None:
        return self._session.scalars(self._select().where(t.users.c.id == user_id)).first()

    def by_email(self, email: str) -> User | None:
        return self._session.scalars(self._select().where(t.users.c.email == email.lower())).first()

    def list(self) -> builtins.list[User]:
        return list(self._session.scalars(self._select().order_by(t.users.c.email)))

    def add(self, user: User) -> None:
        _check_scope(self._scope, user.company_id, "company")
        _add_once(self._session, user)


class SqlIdentityRepository(_Scoped):
    """Identity lookups are not scoped: they are how a principal (and so a scope) is found."""

    def find(self, *, platform: str, workspace_id: str, platform_user_id: str) -> ChatIdentity | None:
        c = t.chat_identities.c
        stmt = select(ChatIdentity).where(
            c.platform == platform, c.workspace_id == workspace_id, c.platform_user_id == platform_user_id
        )
        return self._session.scalars(stmt).first()

    def for_user(self, user_id: int) -> builtins.list[ChatIdentity]:
        c = t.chat_identities.c
        stmt = select(ChatIdentity).where(c.user_id == user_id).order_by(c.platform, c.workspace_id)
        return list(self._session.scalars(stmt))

    def add(self, identity: ChatIdentity) -> None:
        _add_once(self._session, identity)

    def remove(self, identity: ChatIdentity) -> None:
        self._session.delete(identity)
        self._session.flush()


class SqlKnownChannelRepository(_Scoped):
    """Not scoped, like identities: a channel belongs to no company until provisioning names it for one."""

    def get(self, *, platform: str, workspace_id: str, channel_id: str) -> KnownChannel | None:
        c = t.known_channels.c
        stmt = select(KnownChannel).where(
            c.platform == platform, c.workspace_id == workspace_id, c.channel_id == channel_id
        )
        return self._session.scalars(stmt).first()

    def with_id(self, *, platform: str, channel_id: str) -> builtins.list[KnownChannel]:
        c = t.known_channels.c
        stmt = select(KnownChannel).where(c.platform == platform, c.channel_id == channel_id).order_by(c.workspace_id)
        return list(self._session.scalars(stmt))

    def add(self, channel: KnownChannel) -> None:
        _add_once(self._session, channel)


class SqlClusterRepository(_Scoped):
    """A scoped caller sees the clusters that hold a pool of one of its companies."""

    def _select(self) -> Any:
        stmt = select(Cluster)
        if not self._scope.unrestricted:
            bound = select(t.pool_bindings.c.cluster_id).where(_in_scope(t.pool_bindings.c.company_id, self._scope))
            stmt = stmt.where(t.clusters.c.id.in_(bound))
        return stmt

    def get(self, cluster_id: int) -> Cluster | None:
        return self._session.scalars(self._select().where(t.clusters.c.id == cluster_id)).first()

    def by_name(self, name: str) -> Cluster | None:
        return self._session.scalars(self._select().where(t.clusters.c.name == name)).first()

    def list(self) -> builtins.list[Cluster]:
        return list(self._session.scalars(self._select().order_by(t.clusters.c.name)))

    def add(self, cluster: Cluster) -> None:
        if not self._scope.unrestricted:
            raise NotFound("cluster not found")
        self._session.add(cluster)
        self._session.flush()


class SqlPoolBindingRepository(_Scoped):
    def list(self) -> builtins.list[PoolBinding]:
        c = t.pool_bindings.c
        stmt = select(PoolBinding).where(_in_scope(c.company_id, self._scope)).order_by(c.cluster_id, c.pool)
        return list(self._session.scalars(stmt))

    def add(self, binding: PoolBinding) -> None:
        _check_scope(self._scope, binding.company_id, "company")
        self._session.add(binding)
        self._session.flush()

    def remove(self, binding: PoolBinding) -> None:
        _check_scope(self._scope, binding.company_id, "company")
        self._session.delete(binding)
        self._session.flush()


class SqlBackupOwnerRepository(_Scoped):
    """Backup ownership; a scoped caller reads and records only its companies' backups."""

    def mine(self, cluster_id: int, *, vmid: int | None = None) -> dict[str, int]:
        c = t.backup_owners.c
        # two plain columns, not mapped objects: a status reads thousands of them and changes none
        stmt = select(c.volid, c.company_id).where(c.cluster_id == cluster_id, _in_scope(c.company_id, self._scope))
        if vmid is not None:
            stmt = stmt.where(c.vmid == vmid)
        return {volid: company_id for volid, company_id in self._session.execute(stmt)}

    def known(self, cluster_id: int, *, vmid: int | None = None) -> builtins.set[str]:
        # the volume ids only, never whose they are: enough to keep a caller from claiming another's backup
        c = t.backup_owners.c
        stmt = select(c.volid).where(c.cluster_id == cluster_id)
        if vmid is not None:
            stmt = stmt.where(c.vmid == vmid)
        return set(self._session.scalars(stmt))

    def reused(self, cluster_id: int) -> builtins.set[int]:
        # VMIDs that also had a guest of a company outside the scope: whose, it does not say
        c = t.backup_owners.c
        if self._scope.unrestricted:
            return set()
        outside = ~_in_scope(c.company_id, self._scope)
        return set(self._session.scalars(select(c.vmid).where(c.cluster_id == cluster_id, outside).distinct()))

    def add(self, owners: Iterable[BackupOwner]) -> None:
        owners = builtins.list(owners)
        for owner in owners:
            _check_scope(self._scope, owner.company_id, "company")
        self._session.add_all(owners)
        try:
            self._session.flush()
        except IntegrityError as e:
            # the unit of work is spoilt now: the caller rolls back and records one by one
            raise DuplicateRequest() from e


class SqlSubscriptionRepository(_Scoped):
    """A scoped caller sees its companies' subscriptions; provider ones (no company) only the unrestricted do."""

    def _select(self) -> Any:
        c = t.subscriptions.c
        stmt = select(Subscription)
        if not self._scope.unrestricted:
            stmt = stmt.where(c.company_id.is_not(None), _in_scope(c.company_id, self._scope))
        return stmt

    def get(self, subscription_id: int) -> Subscription | None:
        return self._session.scalars(self._select().where(t.subscriptions.c.id == subscription_id)).first()

    def list(self, *, topic: Topic | None = None, active_only: bool = False) -> builtins.list[Subscription]:
        c = t.subscriptions.c
        stmt = self._select().order_by(c.id)
        if topic is not None:
            stmt = stmt.where(c.topic == topic)
        if active_only:
            stmt = stmt.where(c.state == SubscriptionState.ACTIVE)
        return builtins.list(self._session.scalars(stmt))

    def listeners(self, topic: Topic) -> builtins.list[Subscription]:
        # deliberately unscoped (system work, like the outbox): an event is recorded in the unit of work
        # of the change it is about, whoever made it; message_for applies the tenant rule to each one
        c = t.subscriptions.c
        stmt = select(Subscription).where(c.topic == topic, c.state == SubscriptionState.ACTIVE).order_by(c.id)
        return builtins.list(self._session.scalars(stmt))

    def add(self, subscription: Subscription) -> None:
        if subscription.company_id is None and not self._scope.unrestricted:
            raise NotFound("company not found")
        _check_scope(self._scope, subscription.company_id, "company")
        self._session.add(subscription)
        self._session.flush()

    def remove(self, subscription: Subscription) -> None:
        self._session.delete(subscription)
        self._session.flush()

    def mark_broken(self, subscription_id: int, *, problem: str) -> bool:
        # conditional, so that of two senders that both hear "channel gone" only one tells the owner
        c = t.subscriptions.c
        result = self._session.execute(
            update(t.subscriptions).where(c.id == subscription_id, c.state == SubscriptionState.ACTIVE)
            .values(state=SubscriptionState.BROKEN, problem=problem[:300])
            .execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def delivered(self, subscription_ids: Iterable[int], *, at: datetime) -> None:
        ids = sorted(set(subscription_ids))
        if ids:
            self._session.execute(update(t.subscriptions).where(t.subscriptions.c.id.in_(ids))
                                  .values(last_delivery_at=at).execution_options(synchronize_session=False))


class SqlOutboxRepository(_Scoped):
    """The notification outbox; not scoped: only the event recorder and the sender (both system work) use it."""

    def add(self, message: OutboxMessage) -> bool:
        # a savepoint per row: an event that arrives twice (push and pull) skips its row, not the whole batch
        try:
            with self._session.begin_nested():
                self._session.add(message)
        except IntegrityError:
            return False
        return True

    def due(self, *, now: datetime, limit: int = 500) -> builtins.list[OutboxMessage]:
        c = t.notify_outbox.c
        stmt = (select(OutboxMessage)
                .where(c.state == OutboxState.PENDING, c.not_before <= now,
                       (c.claimed_until.is_(None)) | (c.claimed_until < now))
                .order_by(c.id).limit(limit))
        return builtins.list(self._session.scalars(stmt))

    def claim(self, message_id: int, *, now: datetime, until: datetime) -> bool:
        # one conditional UPDATE: of two senders only one gets the row; a crashed sender's claim expires
        c = t.notify_outbox.c
        result = self._session.execute(
            update(t.notify_outbox)
            .where(c.id == message_id, c.state == OutboxState.PENDING,
                   (c.claimed_until.is_(None)) | (c.claimed_until < now))
            .values(claimed_until=until).execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def settle(self, message_ids: Iterable[int], *, to: OutboxState, at: datetime) -> None:
        ids = sorted(set(message_ids))
        if ids:
            self._session.execute(
                update(t.notify_outbox).where(t.notify_outbox.c.id.in_(ids), t.notify_outbox.c.state ==
                                              OutboxState.PENDING)
                .values(state=to, sent_at=at if to == OutboxState.SENT else None, claimed_until=None)
                .execution_options(synchronize_session=False))

    def postpone(self, message_ids: Iterable[int], *, until: datetime) -> None:
        ids = sorted(set(message_ids))
        if ids:
            self._session.execute(
                update(t.notify_outbox).where(t.notify_outbox.c.id.in_(ids))
                .values(not_before=until, claimed_until=None, attempts=t.notify_outbox.c.attempts + 1)
                .execution_options(synchronize_session=False))

    def last_sent(self, channel: str) -> datetime | None:
        c = t.notify_outbox.c
        value = self._session.scalar(select(func.max(c.sent_at)).where(c.channel == channel,
                                                                       c.state == OutboxState.SENT))
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)  # an aggregate skips the column's type on some backends
        return value

    def pending(self, subscription_id: int) -> int:
        c = t.notify_outbox.c
        return int(self._session.scalar(select(func.count()).where(
            c.subscription_id == subscription_id, c.state == OutboxState.PENDING)) or 0)


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class SqlEventSourceRepository(_Scoped):
    """Clusters' event sources, poll cursors and events seen; not scoped: system work only."""

    def get(self, cluster_id: int) -> EventSource | None:
        c = t.event_sources.c
        row = self._session.execute(select(t.event_sources).where(c.cluster_id == cluster_id)).first()
        if row is None:
            return None
        return EventSource(cluster_id=row.cluster_id, secret_encrypted=row.secret_encrypted, url=row.url,
                           installed_at=_utc(row.installed_at), last_push_at=_utc(row.last_push_at),
                           poller=row.lease_owner, poller_until=_utc(row.lease_until))

    def _ensure(self, cluster_id: int) -> None:
        # the row may be created by another process at the same moment: a savepoint keeps ours going
        if self._session.scalar(select(t.event_sources.c.cluster_id).where(
                t.event_sources.c.cluster_id == cluster_id)) is not None:
            return
        try:
            with self._session.begin_nested():
                self._session.execute(insert(t.event_sources).values(cluster_id=cluster_id))
        except IntegrityError:
            pass

    def save(self, source: EventSource) -> None:
        self._ensure(source.cluster_id)
        self._session.execute(update(t.event_sources).where(t.event_sources.c.cluster_id == source.cluster_id)
                              .values(secret_encrypted=source.secret_encrypted, url=source.url,
                                      installed_at=source.installed_at))

    def pushed(self, cluster_id: int, *, at: datetime) -> None:
        self._session.execute(update(t.event_sources).where(t.event_sources.c.cluster_id == cluster_id)
                              .values(last_push_at=at).execution_options(synchronize_session=False))

    def cursors(self, cluster_id: int) -> dict[str, int]:
        c = t.event_cursors.c
        return {str(node): int(since) for node, since in
                self._session.execute(select(c.node, c.since).where(c.cluster_id == cluster_id).order_by(c.node))}

    def take_lease(self, cluster_id: int, *, owner: str, now: datetime, until: datetime) -> bool:
        # one conditional UPDATE: of two processes only one polls the cluster; a dead one's lease expires
        self._ensure(cluster_id)
        c = t.event_sources.c
        result = self._session.execute(
            update(t.event_sources)
            .where(c.cluster_id == cluster_id,
                   c.lease_owner.is_(None) | (c.lease_owner == owner) | c.lease_until.is_(None) | (c.lease_until < now))
            .values(lease_owner=owner, lease_until=until).execution_options(synchronize_session=False))
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release_lease(self, cluster_id: int, *, owner: str) -> None:
        c = t.event_sources.c
        self._session.execute(update(t.event_sources).where(c.cluster_id == cluster_id, c.lease_owner == owner)
                              .values(lease_owner=None, lease_until=None).execution_options(synchronize_session=False))

    def cursor(self, cluster_id: int, node: str) -> int | None:
        c = t.event_cursors.c
        value = self._session.scalar(select(c.since).where(c.cluster_id == cluster_id, c.node == node))
        return None if value is None else int(value)

    def set_cursor(self, cluster_id: int, node: str, since: int) -> None:
        # written by the other poller a moment ago, it is kept: the next poll reads from there
        self._set_node_row(t.event_cursors, cluster_id, node, {"since": since})

    def node_version(self, cluster_id: int, node: str) -> str | None:
        c = t.node_versions.c
        value = self._session.scalar(select(c.version).where(c.cluster_id == cluster_id, c.node == node))
        return None if value is None else str(value)

    def set_node_version(self, cluster_id: int, node: str, version: str) -> None:
        # written by another checker a moment ago, it is kept: the next check compares with it
        self._set_node_row(t.node_versions, cluster_id, node[:64], {"version": version[:64]})

    def _set_node_row(self, table: Any, cluster_id: int, node: str, values: dict[str, Any]) -> None:
        """Update the node's row of ``table``, or insert it; one inserted meanwhile by another process wins."""
        c = table.c
        result = self._session.execute(update(table).where(c.cluster_id == cluster_id, c.node == node)
                                       .values(values).execution_options(synchronize_session=False))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            try:
                with self._session.begin_nested():
                    self._session.execute(insert(table).values(cluster_id=cluster_id, node=node, **values))
            except IntegrityError:
                pass

    def seen(self, key: str) -> bool:
        return self._session.scalar(select(t.event_seen.c.event_key).where(t.event_seen.c.event_key == key[:255])
                                    ) is not None

    def forget_seen(self, *, before: datetime) -> int:
        result = self._session.execute(delete(t.event_seen).where(t.event_seen.c.seen_at < before)
                                       .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    def mark_seen(self, key: str, *, at: datetime) -> bool:
        try:
            with self._session.begin_nested():
                self._session.execute(insert(t.event_seen).values(event_key=key[:255], seen_at=at))
        except IntegrityError:
            return False
        return True


_INSERT_AUDIT_EVENT = insert(t.audit_events)  # built once: its values come as the statement's parameters


class SqlAuditLog(_Scoped):
    """Append-only: there is no update or delete here."""

    def append(self, event: AuditEvent) -> None:
        # a scoped caller may write its own companies' trail and global events, never another company's
        if event.company_id is not None:
            _check_scope(self._scope, event.company_id, "company")
        # one INSERT, not the ORM's flush: every command writes a row here, and nothing reads it back
        # in the same unit of work, so tracking it as an object cost more than sending it
        values = {f.name: getattr(event, f.name) for f in fields(AuditEvent) if f.name != "id"}
        event.id = self._session.execute(_INSERT_AUDIT_EVENT, values).inserted_primary_key[0]

    def query(
        self,
        *,
        since: datetime | None = None,
        company_id: int | None = None,
        actor: str | None = None,
        limit: int = 500,
    ) -> builtins.list[AuditEvent]:
        c = t.audit_events.c
        stmt = select(AuditEvent).where(_in_scope(c.company_id, self._scope))
        if since is not None:
            stmt = stmt.where(c.at >= since)
        if company_id is not None:
            stmt = stmt.where(c.company_id == company_id)
        if actor is not None:
            stmt = stmt.where(c.actor == actor)
        stmt = stmt.order_by(c.at.desc(), c.id.desc()).limit(limit)
        return list(reversed(list(self._session.scalars(stmt))))


_INSERT_JOB = insert(t.jobs)  # built once: its values come as the statement's parameters
_LAST_JOB_OF_GUEST = _for_companies(
    select(t.jobs.c.id, t.jobs.c.summary, t.jobs.c.state)
    .where(t.jobs.c.target_cluster == bindparam("cluster"), t.jobs.c.target_vmid == bindparam("vmid"))
    .order_by(t.jobs.c.created_at.desc(), t.jobs.c.id).limit(1),
    t.jobs.c.company_id,
)


# every command that starts a job sends these two: built once, as the job's record is
_ROUTE_IF_QUEUED = _for_companies(
    select(t.jobs.c.conversation, t.jobs.c.message_ref)
    .where(t.jobs.c.id == bindparam("job_id"), t.jobs.c.state == JobState.QUEUED),
    t.jobs.c.company_id,
)
_HAND_OVER = _for_companies(
    update(t.jobs).where(t.jobs.c.id == bindparam("job_id"), t.jobs.c.state == JobState.QUEUED)
    .values(conversation=bindparam("new_conversation", type_=t.jobs.c.conversation.type),
            message_ref=bindparam("new_message_ref", type_=t.jobs.c.message_ref.type),
            queue_owner=bindparam("new_queue_owner", type_=t.jobs.c.queue_owner.type))
    .execution_options(synchronize_session=False),
    t.jobs.c.company_id,
)


class SqlJobRepository(_Scoped):
    def _select(self) -> Any:
        return select(Job).where(_in_scope(t.jobs.c.company_id, self._scope))

    def add(self, job: Job) -> None:
        _check_scope(self._scope, job.company_id, "company")
        # one INSERT, not the ORM's flush: every action writes one, and tracking two dozen columns
        # as an object cost a vm start more than sending them; nothing in the unit of work edits it after
        values = {f.name: getattr(job, f.name) for f in fields(Job)} | t.job_guest_columns(job.target)
        try:
            self._session.execute(_INSERT_JOB, values)
        except IntegrityError as e:
            raise DuplicateRequest() from e  # its request id is taken: the caller rolls back, then finds it

    def get(self, job_id: str) -> Job | None:
        return self._session.scalars(self._select().where(t.jobs.c.id == job_id)).first()

    def by_request(self, request_id: str) -> Job | None:
        return self._session.scalars(self._select().where(t.jobs.c.request_id == request_id)).first()

    def list(self, *, states: Iterable[JobState] | None = None, limit: int = 50) -> builtins.list[Job]:
        stmt = self._select()
        if states is not None:
            stmt = stmt.where(t.jobs.c.state.in_(list(states)))
        return list(self._session.scalars(stmt.order_by(t.jobs.c.created_at.desc(), t.jobs.c.id).limit(limit)))

    def last_for(self, *, cluster: str, vmid: int) -> JobBrief | None:
        # every vm status asks this: the database picks the one row and sends only what the status
        # shows of it, through a statement built once (building and keying it cost more than its query)
        found = _scoped_statement(_LAST_JOB_OF_GUEST, self._scope, cluster=cluster, vmid=vmid)
        if found is None:
            return None
        row = self._session.connection().execute(*found).first()
        return None if row is None else JobBrief(*row)

    def add_task(self, job: Job, upid: str) -> None:
        _check_scope(self._scope, job.company_id, "company")
        c = t.job_tasks.c
        known = select(c.upid).where(c.job_id == job.id, c.upid == upid)
        if self._session.execute(known).first() is None:
            self._session.execute(insert(t.job_tasks).values(job_id=job.id, upid=upid, company_id=job.company_id))

    def askers(self, upids: Iterable[str]) -> dict[str, User]:
        wanted = sorted(set(upids))
        if not wanted:
            return {}
        c = t.job_tasks.c
        # the scope filters the jobs, not the users: a task of another company's job finds nobody, while
        # provider staff who acted for the caller's company are named, as its approval cards name them
        stmt = (select(c.upid, User).select_from(t.job_tasks).join(t.jobs, t.jobs.c.id == c.job_id)
                .join(t.users, t.users.c.id == t.jobs.c.actor_user_id)
                .where(c.upid.in_(wanted), _in_scope(c.company_id, self._scope)))
        return {upid: user for upid, user in self._session.execute(stmt).all()}

    def route_if_queued(self, job_id: str) -> JobRoute | None:
        # two columns: describing and decoding the whole record cost a "vm start" more than its query did
        found = _scoped_statement(_ROUTE_IF_QUEUED, self._scope, job_id=job_id)
        row = None if found is None else self._session.connection().execute(*found).first()
        return None if row is None else JobRoute(*row)

    def hand_over(self, job_id: str, *, route: JobRoute, queue_owner: str | None) -> bool:
        found = _scoped_statement(_HAND_OVER, self._scope, job_id=job_id, new_conversation=route.conversation,
                                  new_message_ref=route.message_ref, new_queue_owner=queue_owner)
        if found is None:
            return False
        # through the session, unlike the reads: an autocommit unit of work counts its writes there
        result = self._session.execute(*found)
        self._session.expire_all()
        return bool(result.rowcount == 1)

    def claim(self, job_id: str, *, now: datetime) -> bool:
        c = t.jobs.c
        result = self._session.execute(
            update(t.jobs)
            .where(c.id == job_id, c.state == JobState.QUEUED, _in_scope(c.company_id, self._scope))
            .values(state=JobState.RUNNING, started_at=now, heartbeat_at=now)
            .execution_options(synchronize_session=False)
        )
        claimed = bool(result.rowcount == 1)  # type: ignore[attr-defined]
        if claimed:
            self._session.expire_all()
        return claimed

    def settle(self, job_id: str, *, expected: Iterable[JobState], to: JobState, at: datetime, result: str) -> bool:
        c = t.jobs.c
        outcome = self._session.execute(
            update(t.jobs)
            .where(c.id == job_id, c.state.in_(list(expected)), _in_scope(c.company_id, self._scope))
            .values(state=to, finished_at=at, result=result)
            .execution_options(synchronize_session=False)
        )
        settled = bool(outcome.rowcount == 1)  # type: ignore[attr-defined]
        self._session.expire_all()
        return settled

    def stale(self, *, heartbeat_before: datetime) -> builtins.list[Job]:
        c = t.jobs.c
        return list(
            self._session.scalars(
                self._select().where(c.state == JobState.RUNNING, c.heartbeat_at < heartbeat_before).order_by(c.id)
            )
        )

    def waiting(self) -> builtins.list[Job]:
        c = t.jobs.c
        stmt = self._select().where(c.state == JobState.QUEUED).order_by(c.created_at, c.id)
        return list(self._session.scalars(stmt))


class SqlApprovalRepository(_Scoped):
    def _select(self) -> Any:
        return select(ApprovalRequest).where(_in_scope(t.approval_requests.c.company_id, self._scope))

    def add(self, request: ApprovalRequest) -> None:
        _check_scope(self._scope, request.company_id, "company")
        _add_once(self._session, request)

    def get(self, approval_id: str) -> ApprovalRequest | None:
        return self._session.scalars(self._select().where(t.approval_requests.c.id == approval_id)).first()

    def by_request(self, request_id: str) -> ApprovalRequest | None:
        stmt = self._select().where(t.approval_requests.c.request_id == request_id)
        return self._session.scalars(stmt).first()

    def list(self, *, states: Iterable[ApprovalState] | None = None, limit: int = 50) -> builtins.list[ApprovalRequest]:
        c = t.approval_requests.c
        stmt = self._select()
        if states is not None:
            stmt = stmt.where(c.state.in_(list(states)))
        return list(self._session.scalars(stmt.order_by(c.created_at.desc(), c.id).limit(limit)))

    def decide(self, approval_id: str, *, to: ApprovalState, by_user_id: int, at: datetime, note: str = "") -> bool:
        # one conditional UPDATE: of any number of concurrent deciders exactly one sees rowcount 1
        c = t.approval_requests.c
        result = self._session.execute(
            update(t.approval_requests)
            .where(c.id == approval_id, c.state == ApprovalState.PENDING, _in_scope(c.company_id, self._scope))
            .values(state=to, decided_by_user_id=by_user_id, decided_at=at, decision_note=note)
            .execution_options(synchronize_session=False)
        )
        decided = bool(result.rowcount == 1)  # type: ignore[attr-defined]
        self._session.expire_all()
        return decided


class SqlIpRangeRepository(_Scoped):
    def _select(self) -> Any:
        return select(IpRange).where(_in_scope(t.ip_ranges.c.company_id, self._scope))

    def get(self, range_id: int) -> IpRange | None:
        return self._session.scalars(self._select().where(t.ip_ranges.c.id == range_id)).first()

    def by_name(self, company_id: int, name: str) -> IpRange | None:
        c = t.ip_ranges.c
        return self._session.scalars(self._select().where(c.company_id == company_id, c.name == name)).first()

    def list(self) -> builtins.list[IpRange]:
        c = t.ip_ranges.c
        return list(self._session.scalars(self._select().order_by(c.company_id, c.name)))

    def add(self, ip_range: IpRange) -> None:
        _check_scope(self._scope, ip_range.company_id, "company")
        self._session.add(ip_range)
        self._session.flush()

    def remove(self, ip_range: IpRange) -> None:
        _check_scope(self._scope, ip_range.company_id, "range")
        self._session.delete(ip_range)
        self._session.flush()


class SqlIpAssignmentRepository(_Scoped):
    def _select(self) -> Any:
        return select(IpAssignment).where(_in_scope(t.ip_assignments.c.company_id, self._scope))

    def add(self, assignment: IpAssignment) -> None:
        _check_scope(self._scope, assignment.company_id, "company")
        # the unique keys (range, address) and (guest, NIC) decide between concurrent allocations
        _add_once(self._session, assignment)

    def count(self, range_id: int) -> int:
        c = t.ip_assignments.c
        stmt = select(func.count()).select_from(t.ip_assignments).where(
            c.range_id == range_id, _in_scope(c.company_id, self._scope))
        return int(self._session.scalar(stmt) or 0)

    def first_free(self, range_id: int, start: int) -> int:
        c = t.ip_assignments.c
        taken = select(c.id).where(c.range_id == range_id, c.number == start)
        if self._session.scalar(taken) is None:
            return start
        # walk the unique index (range, number) upwards from start and stop at the first number whose successor
        # is not held: the database does in C what a Python loop over every taken address would do
        a, b = t.ip_assignments.alias("a"), t.ip_assignments.alias("b")
        successor = select(b.c.id).where(b.c.range_id == range_id, b.c.number == a.c.number + 1)
        stmt = (select(a.c.number + 1).where(a.c.range_id == range_id, a.c.number >= start, ~successor.exists())
                .order_by(a.c.number).limit(1))
        return int(self._session.scalar(stmt))  # type: ignore[arg-type]  # start is held: some row answers

    def for_range(self, range_id: int) -> builtins.list[IpAssignment]:
        c = t.ip_assignments.c
        return list(self._session.scalars(self._select().where(c.range_id == range_id).order_by(c.number)))

    def for_company(self) -> builtins.list[IpAssignment]:
        c = t.ip_assignments.c
        return list(self._session.scalars(self._select().order_by(c.range_id, c.number)))

    def for_guest(self, cluster_id: int, vmid: int) -> builtins.list[IpAssignment]:
        c = t.ip_assignments.c
        stmt = self._select().where(c.cluster_id == cluster_id, c.vmid == vmid).order_by(c.nic)
        return list(self._session.scalars(stmt))

    def get(self, assignment_id: int) -> IpAssignment | None:
        return self._session.scalars(self._select().where(t.ip_assignments.c.id == assignment_id)).first()

    def bind(self, assignment_id: int, *, vmid: int) -> bool:
        # one conditional UPDATE: an address released meanwhile is not brought back
        c = t.ip_assignments.c
        result = self._session.execute(
            update(t.ip_assignments).where(c.id == assignment_id, _in_scope(c.company_id, self._scope))
            .values(vmid=vmid).execution_options(synchronize_session=False)
        )
        self._session.expire_all()
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release(self, assignment_id: int) -> bool:
        c = t.ip_assignments.c
        result = self._session.execute(
            delete(t.ip_assignments).where(c.id == assignment_id, _in_scope(c.company_id, self._scope))
            .execution_options(synchronize_session=False)
        )
        self._session.expire_all()
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


class SqlSshRepository(_Scoped):
    """pvebot's SSH keys and nodes: provider data, so a scoped (company) caller sees none and may add none."""

    def keys(self, cluster_id: int) -> builtins.list[SshKey]:
        if not self._scope.unrestricted:
            return []
        stmt = select(SshKey).where(t.ssh_keys.c.cluster_id == cluster_id).order_by(t.ssh_keys.c.id)
        return list(self._session.scalars(stmt))

    def add_key(self, key: SshKey) -> None:
        self._unrestricted()
        self._session.add(key)
        self._session.flush()

    def remove_key(self, key: SshKey) -> None:
        self._unrestricted()
        self._session.delete(key)
        self._session.flush()

    def nodes(self, cluster_id: int) -> builtins.list[SshNode]:
        if not self._scope.unrestricted:
            return []
        stmt = select(SshNode).where(t.ssh_nodes.c.cluster_id == cluster_id).order_by(t.ssh_nodes.c.node)
        return list(self._session.scalars(stmt))

    def add_node(self, node: SshNode) -> None:
        self._unrestricted()
        self._session.add(node)
        self._session.flush()

    def remove_node(self, node: SshNode) -> None:
        self._unrestricted()
        self._session.delete(node)
        self._session.flush()

    def _unrestricted(self) -> None:
        if not self._scope.unrestricted:
            raise NotFound("cluster not found")
