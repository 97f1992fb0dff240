"""The MariaDB pool's round trips: no ping while a connection is in use, no second ROLLBACK after a
session's own end, yet never a transaction carried into the next use nor a dead connection handed out."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pymysql  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from adapters import outages
from adapters.sql import migrate
from adapters.sql import uow as sql_uow
from adapters.sql.tables import directory_version
from adapters.sql.uow import SqlUnitOfWork, SqlUnitOfWorkFactory, make_engine
from core.model import AuditEvent, Company, Job, JobState
from core.principal import Scope
from tests.relay import Relay
from tests.support import mariadb_database

pytestmark = pytest.mark.mariadb

_COUNTERS = ("Com_admin_commands", "Com_commit", "Com_rollback")  # COM_PING is an admin command


@pytest.fixture
def engine() -> Iterator[Engine]:
    with mariadb_database() as url:
        engine = make_engine(url, pool_size=1, max_overflow=0)  # every unit of work on the same connection
        migrate.upgrade(engine)
        yield engine
        engine.dispose()


def counters(engine: Engine) -> dict[str, int]:
    """This pooled connection's own counts, read past SQLAlchemy so that reading adds none."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Com_admin_commands', 'Com_commit', 'Com_rollback')")
        return {name: int(value) for name, value in cur.fetchall()}
    finally:
        raw.close()


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in _COUNTERS}


def version_read(factory: SqlUnitOfWorkFactory) -> None:
    with factory(Scope.everything()) as uow:
        assert uow.directory_version() is not None


def version_bump(factory: SqlUnitOfWorkFactory) -> None:
    with factory(Scope.everything()) as uow:
        assert isinstance(uow, SqlUnitOfWork)
        uow.session.execute(sa.update(directory_version).values(version=directory_version.c.version + 1))
        uow.commit()


def test_a_unit_of_work_costs_its_statements_and_one_end(engine: Engine) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    version_read(factory)  # the connection's first use
    before = counters(engine)
    for _ in range(10):
        version_read(factory)
    for _ in range(10):
        version_bump(factory)
    # a read ends with its ROLLBACK, a write with its COMMIT; the pool adds no ping and no second ROLLBACK
    assert delta(before, counters(engine)) == {"Com_admin_commands": 0, "Com_commit": 10, "Com_rollback": 10}


def locked_elsewhere(engine: Engine) -> bool:
    """Whether another connection waits in vain for the directory_version row's lock."""
    url = engine.url
    other = pymysql.connect(host=url.host, port=url.port or 3306, user=url.username, database=url.database)
    try:
        cur = other.cursor()
        cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
        try:
            cur.execute("UPDATE directory_version SET version = version WHERE id = 1")
        except pymysql.err.OperationalError as e:
            assert e.args[0] == 1205, e  # lock wait timeout
            return True
        other.rollback()
        return False
    finally:
        other.close()


def test_a_write_left_open_on_the_bare_connection_is_rolled_back_at_return(engine: Engine) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    version_bump(factory)  # the connection's last end was a COMMIT of ours
    with factory(Scope.everything()) as uow:
        start = uow.directory_version()
    raw = engine.raw_connection()
    raw.cursor().execute("UPDATE directory_version SET version = version + 100 WHERE id = 1")
    raw.close()  # back to the pool with the row locked and the update pending
    assert not locked_elsewhere(engine)
    with factory(Scope.everything()) as uow:
        assert uow.directory_version() == start


def test_a_connection_dropped_mid_transaction_is_rolled_back_before_its_next_use(engine: Engine) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    version_bump(factory)
    conn = engine.connect()
    conn.execute(sa.select(directory_version.c.version).with_for_update())  # a read that holds a lock
    del conn
    gc.collect()  # the pool takes the connection back without anybody ending its transaction
    assert not locked_elsewhere(engine)
    version_bump(factory)


def kill_pooled_connection(engine: Engine) -> None:
    raw = engine.raw_connection()
    thread_id = raw.dbapi_connection.thread_id()  # type: ignore[union-attr]
    raw.close()
    with make_engine(str(engine.url.set(query={}))).connect() as killer:
        killer.exec_driver_sql(f"KILL {int(thread_id)}")


def test_a_connection_killed_while_idle_is_replaced_without_an_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    version_read(factory)
    kill_pooled_connection(engine)  # as a server's wait_timeout, or a restart, would
    monkeypatch.setattr(sql_uow, "_PING_AFTER_IDLE_SECONDS", 0.0)  # it has sat in the pool long enough
    version_read(factory)


def test_a_connection_lost_within_the_idle_second_fails_one_statement_then_recovers(
    engine: Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    version_read(factory)
    kill_pooled_connection(engine)
    monkeypatch.setattr(sql_uow, "_PING_AFTER_IDLE_SECONDS", 3600.0)  # used a moment ago: not pinged
    with pytest.raises(sa.exc.OperationalError) as lost:
        version_read(factory)
    assert lost.value.connection_invalidated  # SQLAlchemy drops it (and every older one)
    version_read(factory)


def job_row(job_id: str) -> Job:
    return Job(id=job_id, request_id=job_id, company_id=1, actor_user_id=1, action="vm.start", target={},
               params={}, state=JobState.QUEUED, created_at=datetime.now(UTC))


def audit_row(n: int) -> AuditEvent:
    return AuditEvent(at=datetime.now(UTC), action="command", actor="bob@acme.example", target=f"vm status {n}")


def audited_elsewhere(engine: Engine) -> int:
    """The audit rows another connection sees: what is durable, not what a session holds."""
    with make_engine(str(engine.url.set(query={}))).connect() as other:
        return int(other.exec_driver_sql("SELECT COUNT(*) FROM audit_events").scalar_one())


def test_an_autocommit_unit_of_work_sends_its_statements_and_nothing_else(engine: Engine) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    main, autocommit = factory.engines
    version_read(factory)
    with factory(Scope.everything(), autocommit=True) as uow:  # the autocommit connection's first use
        uow.directory_version()
    before, before_main = counters(autocommit), counters(main)
    for n in range(10):
        with factory(Scope.everything(), autocommit=True) as uow:
            assert uow.directory_version() is not None
        with factory(Scope.everything(), autocommit=True) as uow:
            uow.audit.append(audit_row(n))
            uow.commit()
    # no BEGIN, COMMIT, ROLLBACK or ping: each statement is its own transaction
    assert delta(before, counters(autocommit)) == {"Com_admin_commands": 0, "Com_commit": 0, "Com_rollback": 0}
    assert delta(before_main, counters(main)) == {"Com_admin_commands": 0, "Com_commit": 0, "Com_rollback": 0}
    assert audited_elsewhere(engine) == 10  # and durable once written


def test_an_autocommit_unit_of_work_refuses_a_second_row(engine: Engine) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    with factory(Scope.everything(), autocommit=True) as uow:
        uow.audit.append(audit_row(1))  # durable already: there is no transaction to hold it back
        with pytest.raises(RuntimeError, match="one row at most"):
            uow.audit.append(audit_row(2))
    assert audited_elsewhere(engine) == 1


def test_an_autocommit_unit_of_work_counts_a_flushed_row_and_a_statement_alike(engine: Engine) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    with factory(Scope.everything(), autocommit=True) as uow:
        uow.jobs.add(job_row("first"))  # through the session's flush
        with pytest.raises(RuntimeError, match="one row at most"):
            uow.audit.append(audit_row(1))  # an INSERT of its own
    assert audited_elsewhere(engine) == 0


def test_an_autocommit_unit_of_work_refuses_a_directory_change(engine: Engine) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    with factory(Scope.everything(), autocommit=True) as uow:
        start = uow.directory_version()
        with pytest.raises(RuntimeError, match="nothing of the directory"):
            uow.companies.add(Company(slug="globex", name="Globex"))  # its version bump would be a second write
    with factory(Scope.everything(), autocommit=True) as uow:
        assert uow.directory_version() == start
        assert uow.companies.by_slug("globex") is None


def test_a_transaction_begun_on_an_autocommit_connection_is_rolled_back_at_return(engine: Engine) -> None:
    factory = SqlUnitOfWorkFactory(engine)
    autocommit = factory.engines[1]
    with factory(Scope.everything(), autocommit=True) as uow:
        start = uow.directory_version()
    raw = autocommit.raw_connection()
    cur = raw.cursor()
    cur.execute("BEGIN")
    cur.execute("UPDATE directory_version SET version = version + 100 WHERE id = 1")
    raw.close()  # back to the pool inside its transaction
    assert not locked_elsewhere(engine)
    with factory(Scope.everything(), autocommit=True) as uow:
        assert uow.directory_version() == start


def test_the_bots_statements_wait_a_minute_at_most_and_a_migrations_as_long_as_they_take() -> None:
    with mariadb_database() as url:
        bot, migrating = make_engine(url), make_engine(url, io_timeout=None)
        try:
            for engine, expected in ((bot, 60), (migrating, None)):
                raw = engine.raw_connection()
                try:
                    driver = raw.driver_connection
                    assert (driver._read_timeout, driver._write_timeout) == (expected, expected)
                finally:
                    raw.close()
        finally:
            bot.dispose()
            migrating.dispose()


def test_a_database_that_stops_answering_fails_the_statement_instead_of_waiting_forever() -> None:
    # a hung server or a network dropping packets keeps the connection open and answers nothing:
    # pymysql reads without end by default, and every thread that touches the database (each command,
    # /readyz, the maintenance sweep) would hang with it
    with mariadb_database() as url:
        target = sa.engine.make_url(url)
        relay = Relay((target.host or "127.0.0.1", target.port or 3306))
        # the bot's path with a shorter wait than its minute
        engine = make_engine(str(target.set(host="127.0.0.1", port=relay.port)), io_timeout=2)
        outcome: list[BaseException | None] = []

        def ask() -> None:
            try:
                with engine.connect() as connection:
                    connection.execute(sa.text("SELECT 1"))
                outcome.append(None)
            except BaseException as e:
                outcome.append(e)

        try:
            ask()
            assert outcome == [None]
            relay.freeze()
            asking = threading.Thread(target=ask, daemon=True)
            asking.start()
            asking.join(timeout=60)  # a bound on a hang, not a timing
            assert not asking.is_alive(), "the statement still waits on a database that does not answer"
            assert isinstance(outcome[1], sa.exc.OperationalError)
            assert outages.describe(outcome[1]) == outages.DATABASE
        finally:
            relay.thaw()
            engine.dispose()
            relay.close()
