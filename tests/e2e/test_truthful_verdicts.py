"""A job's verdict says what is known: a task followed through Proxmox errors or a database outage ends as
it really ended, and when the end cannot be learnt the user reads "may have succeeded", never "failed".

Real parts: the simulator over HTTPS with its fault injection, and MariaDB behind a TCP relay the test
cuts and restores.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.sql import migrate
from core.principal import Scope
from tests.e2e.shell_world import World, job_ids, world
from tests.relay import Relay
from tests.support import mariadb_database

pytestmark = pytest.mark.slow
BOB = "bob@acme.example"


def _queue(w: World, line: str) -> str:
    session, out = w.shell(BOB)
    session.wait_seconds = 0
    session.run([line])
    job = job_ids(out.getvalue())[0]
    w.wait_state(job, {"running"})
    return job


@contextmanager
def relayed_mariadb() -> Iterator[tuple[str, Relay]]:
    """A fresh, migrated MariaDB database reached through a relay the test can cut."""
    with mariadb_database() as url:
        migrate.upgrade(sa.create_engine(url))
        port = int(re.search(r":(\d+)/", url).group(1))  # type: ignore[union-attr]
        relay = Relay(("127.0.0.1", port))
        try:
            yield url.replace(f":{port}/", f":{relay.port}/"), relay
        finally:
            relay.close()


def _task_running(w: World, vmid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with w.sim.state.lock:
            if w.sim.state.guests[vmid].busy_upid is not None:
                return
        time.sleep(0.02)
    raise AssertionError("the Proxmox task never started")


def _result(w: World, job_id: str) -> str:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        job = uow.jobs.get(job_id)
    assert job is not None
    return job.result


def test_errors_while_following_a_task_do_not_make_a_verdict(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded", task_seconds=1.5) as w:
        job = _queue(w, "vm start db-01")
        _task_running(w, 101)
        # the task runs on in Proxmox while its status answers 500 and connections drop
        w.sim.faults.http_500("/nodes/pve1/tasks", count=12)
        w.sim.faults.drop_connection(count=3)
        assert w.wait_state(job, {"succeeded", "failed", "unknown"}, timeout=30) == "succeeded"
        assert w.sim.guest(101).status == "running"


def test_a_task_that_cannot_be_followed_to_its_end_is_reported_unknown_not_failed(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded", task_seconds=3.0, follow_grace=1.0) as w:
        job = _queue(w, "vm start db-01")
        _task_running(w, 101)
        w.sim.faults.node_offline("pve1")  # its API stops answering for good
        assert w.wait_state(job, {"succeeded", "failed", "unknown"}, timeout=30) == "unknown"
        result = _result(w, job)
        assert "it may have succeeded" in result and "check `vm status lab/101`" in result, result
        w.sim.faults.node_offline("pve1", offline=False)


@pytest.mark.mariadb
def test_a_database_outage_mid_job_does_not_end_it(tmp_path: Path) -> None:
    with relayed_mariadb() as (relayed, relay):
        with world(tmp_path, queue="embedded", task_seconds=4.0, database_url=relayed) as w:
            job = _queue(w, "vm start db-01")
            _task_running(w, 101)
            relay.cut()  # the database goes away while the task runs
            time.sleep(2.0)
            relay.restore()
            assert w.wait_state(job, {"succeeded", "failed", "unknown"}, timeout=60) == "succeeded"
            assert w.sim.guest(101).status == "running"


@pytest.mark.mariadb
def test_the_shell_says_the_database_is_unavailable_and_carries_on(tmp_path: Path) -> None:
    with relayed_mariadb() as (relayed, relay):
        with world(tmp_path, queue="embedded", database_url=relayed) as w:
            session, out = w.shell(BOB)
            session.wait_seconds = 0
            relay.cut()
            session.run(["vm list", "whoami"])  # no traceback, no exit: two clear answers
            relay.restore()
            session.run(["whoami"])
            text = out.getvalue()
            assert text.count("❌ the database is unavailable; try again in a minute") >= 2, text
            assert "Traceback" not in text and "internal error" not in text
            assert "Role     user" in text.rsplit("whoami", 1)[1]  # and afterwards it works again
