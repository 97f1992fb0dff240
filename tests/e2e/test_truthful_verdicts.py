"""A job's verdict says what is known: a task followed through Proxmox errors or a database outage ends as
it really ended, and when the end cannot be learnt the user reads "may have succeeded", never "failed".

Real parts: the simulator over HTTPS with its fault injection, and MariaDB behind a TCP relay the test
cuts and restores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.sql import migrate
from core.principal import Scope
from tests.e2e.shell_world import World, job_ids, world
from tests.e2e.test_dispatch import OwnRedis, own_redis
from tests.relay import Relay
from tests.support import mariadb_database

pytestmark = pytest.mark.slow
__all__ = ["own_redis"]  # the fixture, used by name below
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
            relay.cut()  # the database goes away while the task runs, and stays away past its end
            time.sleep(8.0)  # the 8 s outage: the verdict must wait for the database, not be "stopped"
            assert w.sim.guest(101).status == "running"  # the start was done meanwhile
            relay.restore()
            assert w.wait_state(job, {"succeeded", "failed", "unknown"}, timeout=60) == "succeeded"
            assert "db-01 is running" in _result(w, job)


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


class _Terminal:
    """A ``pvebot shell`` process fed line by line, everything it prints (stdout and stderr) collected."""

    def __init__(self, w: World, *, data_dir: Path) -> None:
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, **w.env, "PYTHONPATH": str(root), "PVEBOT_DATA_DIR": str(data_dir),
               "PVEBOT_LOG_LEVEL": "INFO"}
        self.process = subprocess.Popen([sys.executable, "-m", "bot.cli", "shell", "--as", BOB, "--wait", "5"],
                                        env=env, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._seen.append(line)

    @property
    def text(self) -> str:
        return "".join(self._seen)

    def say(self, line: str, *, until: str, count: int = 1, timeout: float = 60) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        while self.text.count(until) < count:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"no {until!r} (x{count}) after {line!r}; the terminal shows:\n{self.text}")
            time.sleep(0.05)

    def leave(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return code


@pytest.mark.mariadb
def test_a_pvebot_shell_process_outlives_a_database_outage_and_keeps_tracebacks_out_of_the_terminal(
        tmp_path: Path) -> None:
    """Item 14 on the real CLI: the terminal shows the conversation only; the log file gets the details."""
    with relayed_mariadb() as (relayed, relay):
        with world(tmp_path, queue="embedded", database_url=relayed) as w:
            terminal = _Terminal(w, data_dir=tmp_path / "data")
            try:
                terminal.say("whoami", until="Role     user")
                relay.cut()  # the database drops under the running shell, its maintenance loop included
                unavailable = "❌ the database is unavailable; try again in a minute"
                terminal.say("vm list", until=unavailable)
                terminal.say("whoami", until=unavailable, count=2)
                time.sleep(1.5)  # the maintenance loop meets the outage too; its complaints go to the log
                relay.restore()
                terminal.say("whoami", until="Role     user", count=2)
            finally:
                code = terminal.leave()
            assert code == 0, terminal.text  # it did not exit under the outage
            _only_the_conversation(terminal.text, log=tmp_path / "data" / "shell.log", saying="command refused")


def _only_the_conversation(text: str, *, log: Path, saying: str) -> None:
    """The terminal shows no traceback and no log line; the log file has what the logger said."""
    assert "Traceback" not in text and "internal error" not in text, text
    assert not [line for line in text.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL)\b", line)], text
    assert saying in log.read_text(), "the details went nowhere"


def test_a_pvebot_shell_process_with_redis_down_answers_plainly_and_keeps_its_log_to_itself(
        tmp_path: Path, own_redis: OwnRedis) -> None:
    """Item 14 with Redis gone (the test's own redis-server, stopped): a clear answer, no job left waiting."""
    with world(tmp_path, queue="embedded", extra_env={"PVEBOT_REDIS_URL": own_redis.url,
                                                      "PVEBOT_QUEUE": "pvebot-shell-test"}) as w:
        own_redis.stop()
        terminal = _Terminal(w, data_dir=tmp_path / "data")
        try:
            terminal.say("vm start db-01", until="the job queue is unavailable; nothing was done")
        finally:
            code = terminal.leave()
        assert code == 0, terminal.text
        _only_the_conversation(terminal.text, log=tmp_path / "data" / "shell.log", saying="queue")
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            assert [j.state.value for j in uow.jobs.list(limit=10)] == ["failed"]
        assert w.sim.guest(101).status == "stopped"
