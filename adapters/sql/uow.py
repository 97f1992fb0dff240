"""The SQL unit of work and engine set-up for SQLite and MySQL/MariaDB."""

from __future__ import annotations

import time
from itertools import chain
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, select, update
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker

from adapters.sql import repositories as r
from adapters.sql.tables import directory_version, job_guest_columns, start_mappers
from core import model, ports
from core.principal import Scope

# what a principal and the ownership of guests are read from: a change to one raises the version
_DIRECTORY = (model.User, model.ChatIdentity, model.Company, model.Cluster, model.PoolBinding)


def _job_target_columns(_mapper: Any, _connection: Any, job: model.Job) -> None:
    # a job written through the session keeps its indexed guest columns in step (see tables.jobs)
    for name, value in job_guest_columns(job.target).items():
        setattr(job, name, value)


def _raise_directory_version(session: Session, _context: Any, _instances: Any) -> None:
    if any(isinstance(o, _DIRECTORY) for o in chain(session.new, session.dirty, session.deleted)):
        session.execute(update(directory_version).where(directory_version.c.id == 1)
                        .values(version=directory_version.c.version + 1))


# a server that hangs (or a network that drops packets) keeps the connection open and answers nothing,
# and pymysql reads without end by default: every thread touching the database would hang with it. A
# minute is above InnoDB's row lock wait (50 s), so a statement waiting its turn is not cut short
_MYSQL_IO_TIMEOUT_SECONDS = 60


def make_engine(url: str, *, autocommit: bool = False, io_timeout: float | None = _MYSQL_IO_TIMEOUT_SECONDS,
                **kwargs: Any) -> Engine:
    """An engine tuned per backend: SQLite with WAL and foreign keys, MySQL with few round trips.

    ``autocommit`` (MySQL): connections that stay in autocommit mode, where each statement is its
    own transaction; see :meth:`SqlUnitOfWorkFactory.__call__`. ``io_timeout`` (MySQL): seconds a
    read or write of the connection may take; None for none (a schema migration's ALTER TABLE).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            # in WAL mode NORMAL survives any crash of pvebot; only a power loss can cost the last
            # commits, and a commit no longer waits for the disk (the embedded default, one machine)
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    if url.startswith("mysql"):
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("read_timeout", io_timeout)
        connect_args.setdefault("write_timeout", io_timeout)
        kwargs["connect_args"] = connect_args
    kwargs.setdefault("pool_recycle", 3600)
    # each statement sees what others committed before it: a decision taken under a row lock (a
    # company's quota) must count the jobs the transaction it waited for has just added, which
    # MariaDB's default REPEATABLE READ would hide behind the snapshot of its first read
    kwargs.setdefault("isolation_level", "AUTOCOMMIT" if autocommit else "READ COMMITTED")
    # in autocommit mode a ROLLBACK at the end has nothing to undo: skip its round trip
    kwargs.setdefault("skip_autocommit_rollback", autocommit)
    # a round trip to the server costs more than most of a command's own work: the pool's two
    # safety round trips (a ping at every checkout, a ROLLBACK at every return) are made only
    # where they can matter, by the listeners below
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("pool_reset_on_return", None)
    engine = create_engine(url, **kwargs)
    event.listen(engine, "checkout", _ping_if_idle)
    event.listen(engine, "checkin", _note_return)
    if autocommit:
        event.listen(engine, "reset", _roll_back_if_begun)
        return engine
    event.listen(engine, "reset", _roll_back_if_open)
    event.listen(engine, "before_cursor_execute", _note_open)
    event.listen(engine, "commit", _note_closed)
    event.listen(engine, "rollback", _note_closed)
    event.listen(engine, "handle_error", _note_error)
    return engine


# A connection used less than this long ago is taken to be alive: a server lost within that second
# fails one statement, and SQLAlchemy then drops every pooled connection (as after a failed ping).
_PING_AFTER_IDLE_SECONDS = 1.0
_RETURNED_AT, _OPEN = "pvebot_returned_at", "pvebot_transaction_open"
_SERVER_STATUS_IN_TRANS = 1  # MySQL protocol: SERVER_STATUS_IN_TRANS


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    returned_at = record.info.get(_RETURNED_AT)
    if returned_at is None or time.monotonic() - returned_at < _PING_AFTER_IDLE_SECONDS:
        return  # fresh from connect(), or in use a moment ago
    try:
        dbapi_connection.ping(reconnect=False)
    except Exception as e:
        # as the pool's own pre-ping: this connection and every older one are gone, connect anew
        raise exc.InvalidatePoolError() from e


def _note_return(_dbapi_connection: Any, record: Any) -> None:
    record.info[_RETURNED_AT] = time.monotonic()


def _roll_back_if_open(dbapi_connection: Any, record: Any, state: Any) -> None:
    # the reset the pool would do at every return, made only when a transaction may be open: after
    # the session's own COMMIT or ROLLBACK it is a round trip that changes nothing. Every statement
    # sent through SQLAlchemy marks the connection; the server's own flag (last OK packet) covers
    # a write sent past it on the bare DBAPI connection
    in_transaction = getattr(dbapi_connection, "server_status", 0) & _SERVER_STATUS_IN_TRANS
    if state.terminate_only or not (record.info.get(_OPEN, True) or in_transaction):
        return
    dbapi_connection.rollback()
    record.info[_OPEN] = False


def _roll_back_if_begun(dbapi_connection: Any, _record: Any, state: Any) -> None:
    # in autocommit mode only an explicit BEGIN opens a transaction, and the server's flag says so
    if not state.terminate_only and getattr(dbapi_connection, "server_status", 0) & _SERVER_STATUS_IN_TRANS:
        dbapi_connection.rollback()


def _note_open(conn: Any, *_args: Any) -> None:
    conn.info[_OPEN] = True


def _note_closed(conn: Any) -> None:
    if not conn.invalidated:  # a lost connection is discarded, not reset
        conn.info[_OPEN] = False


def _note_error(context: Any) -> None:
    # a failed statement, COMMIT or ROLLBACK leaves the transaction's state unknown: reset on return
    conn = context.connection
    if conn is not None and not conn.closed and not conn.invalidated:
        conn.info[_OPEN] = True


def _one_row_alone(session: Session, _context: Any, _instances: Any) -> None:
    # each statement commits itself: a second row, or a directory change with its version bump,
    # would not hold together with the first
    pending = [*session.new, *session.dirty, *session.deleted]
    if any(isinstance(o, _DIRECTORY) for o in pending):
        raise RuntimeError("an autocommit unit of work writes nothing of the directory")
    _count_writes(session, len(pending))


def _one_statement_alone(state: ORMExecuteState) -> None:
    # the same rule for a write sent as a statement of its own, not through the session's flush
    if state.is_insert or state.is_update or state.is_delete:
        _count_writes(state.session, 1)


def _count_writes(session: Session, writes: int) -> None:
    written = session.info.get("rows_written", 0) + writes
    if written > 1:
        raise RuntimeError("an autocommit unit of work writes one row at most")
    session.info["rows_written"] = written


_READ_DIRECTORY_VERSION = select(directory_version.c.version).where(directory_version.c.id == 1)


class SqlUnitOfWork:
    """:class:`core.ports.UnitOfWork` over one session; rolled back unless committed."""

    # typed as the ports, which the protocol's (invariant) attributes require
    companies: ports.CompanyRepository
    users: ports.UserRepository
    identities: ports.IdentityRepository
    channels: ports.KnownChannelRepository
    clusters: ports.ClusterRepository
    pool_bindings: ports.PoolBindingRepository
    audit: ports.AuditLog
    jobs: ports.JobRepository
    approvals: ports.ApprovalRepository
    ip_ranges: ports.IpRangeRepository
    ip_assignments: ports.IpAssignmentRepository
    backup_owners: ports.BackupOwnerRepository
    subscriptions: ports.SubscriptionRepository
    outbox: ports.OutboxRepository
    ssh: ports.SshRepository
    event_sources: ports.EventSourceRepository

    def __init__(self, session_factory: sessionmaker[Session], scope: Scope, *, autocommit: bool = False) -> None:
        self._session_factory = session_factory
        self.scope = scope
        self._autocommit = autocommit

    def __enter__(self) -> ports.UnitOfWork:
        self.session = self._session_factory()
        s, scope = self.session, self.scope
        self.companies = r.SqlCompanyRepository(s, scope)
        self.users = r.SqlUserRepository(s, scope)
        self.identities = r.SqlIdentityRepository(s, scope)
        self.channels = r.SqlKnownChannelRepository(s, scope)
        self.clusters = r.SqlClusterRepository(s, scope)
        self.pool_bindings = r.SqlPoolBindingRepository(s, scope)
        self.audit = r.SqlAuditLog(s, scope)
        self.jobs = r.SqlJobRepository(s, scope)
        self.approvals = r.SqlApprovalRepository(s, scope)
        self.ip_ranges = r.SqlIpRangeRepository(s, scope)
        self.ip_assignments = r.SqlIpAssignmentRepository(s, scope)
        self.backup_owners = r.SqlBackupOwnerRepository(s, scope)
        self.subscriptions = r.SqlSubscriptionRepository(s, scope)
        self.outbox = r.SqlOutboxRepository(s, scope)
        self.ssh = r.SqlSshRepository(s, scope)
        self.event_sources = r.SqlEventSourceRepository(s, scope)
        return self

    def __exit__(self, *args: object) -> None:
        # close() rolls back what was not committed but, unlike rollback(), leaves loaded
        # objects readable after the unit of work ends
        self.session.close()

    def commit(self) -> None:
        if not self._autocommit:
            self.session.commit()
            return
        self.session.flush()  # each statement has committed itself: no COMMIT to send

    def directory_version(self) -> int | None:
        # every command asks this first: a statement built once, sent past the ORM, which has nothing to map
        return self.session.connection().execute(_READ_DIRECTORY_VERSION).scalar()

    def rollback(self) -> None:
        self.session.rollback()


class SqlUnitOfWorkFactory:
    """Builds scoped units of work on one engine; ``expire_on_commit=False`` so results outlive them."""

    def __init__(self, engine: Engine) -> None:
        start_mappers()
        self.engine = engine
        self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        event.listen(self._sessions, "before_flush", _raise_directory_version)
        # MySQL: autocommit units of work on connections of their own, which stay in that mode
        # (switching a connection's mode costs a round trip each way); none are opened until used
        self._autocommit_engine: Engine | None = None
        self._autocommit_sessions = self._sessions
        if engine.dialect.name == "mysql":
            self._autocommit_engine = make_engine(engine.url.render_as_string(hide_password=False), autocommit=True)
            self._autocommit_sessions = sessionmaker(bind=self._autocommit_engine, expire_on_commit=False)
            event.listen(self._autocommit_sessions, "before_flush", _one_row_alone)
            event.listen(self._autocommit_sessions, "do_orm_execute", _one_statement_alone)
        if not event.contains(model.Job, "before_insert", _job_target_columns):
            event.listen(model.Job, "before_insert", _job_target_columns)
            event.listen(model.Job, "before_update", _job_target_columns)

    def __call__(self, scope: Scope, *, autocommit: bool = False) -> ports.UnitOfWork:
        """A unit of work in ``scope``; see :class:`core.ports.UnitOfWorkFactory` for ``autocommit``.

        SQLite has no round trips to save: there an autocommit one is an ordinary one.
        """
        if not autocommit or self._autocommit_engine is None:
            return SqlUnitOfWork(self._sessions, scope)
        return SqlUnitOfWork(self._autocommit_sessions, scope, autocommit=True)

    @property
    def engines(self) -> tuple[Engine, ...]:
        """The engines it sends statements through: the main one, then the autocommit one (MySQL)."""
        return (self.engine,) + ((self._autocommit_engine,) if self._autocommit_engine is not None else ())

    def dispose(self) -> None:
        for engine in self.engines:
            engine.dispose()
