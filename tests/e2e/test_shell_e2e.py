"""End to end through the shell adapter: every role, real HTTPS to the Proxmox simulator, and the
same run on the embedded queue and on real Redis with a real ``pvebot worker`` subprocess."""

from __future__ import annotations

import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.shell.outbox import OutboxReader
from bot.maintenance import sweep
from tests.e2e.shell_world import job_ids, world

pytestmark = pytest.mark.slow


def _approval_id(text: str) -> str:
    match = re.search(r"apr-([a-z0-9]+)", text)
    assert match, text
    return match.group(1)


def _lines_for(output: str, job_id: str) -> list[str]:
    return [line for line in output.splitlines() if f"job-{job_id}" in line]


@pytest.mark.parametrize("queue", ["embedded", pytest.param("redis", marks=pytest.mark.redis)])
def test_every_role_through_the_shell(tmp_path: Path, queue: str) -> None:
    with world(tmp_path, queue=queue) as w:
        session, out = w.shell("bob@acme.example")
        session.run(["whoami", "vm list", "vm start db-01", "vm start app-02", "vm stop web-01 --reason maintenance"])
        bob = out.getvalue()
        assert "Role     user" in bob
        assert "web-01" in bob and "db-01" in bob and "ct-01" in bob
        assert "app-02" not in bob.split("vm start app-02")[0]  # globex's VM is not in bob's list
        assert "VM 'app-02' not found" in bob  # ... and answers like a VM that does not exist
        apr = _approval_id(bob)
        start_job = job_ids(bob.split("vm start db-01")[1])[0]
        lines = _lines_for(bob, start_job)
        assert "queued" in lines[0]
        assert any("🔄 running" in line for line in lines)
        assert "✅ db-01 is running (done in" in lines[-1], lines  # in order: queued, running…, done
        assert w.sim.guest(101).status == "running"

        session.run([f"approve apr-{apr}", "/as sam@host.example", "vm list", "vm start web-01",
                     "/as carol@globex.example", f"approve apr-{apr}", "vm list",
                     "/as alice@acme.example", f"approve apr-{apr}",
                     "/as dave@globex.example", "snapshot create app-02 before-upgrade",
                     "/as root@host.example", "vm list"])
        text = out.getvalue()[len(bob):]
        sam, rest = text.split("/as carol@globex.example")
        carol, rest = rest.split("/as alice@acme.example")
        alice, rest = rest.split("/as dave@globex.example")
        dave, root = rest.split("/as root@host.example")
        assert "your role (user) cannot use 'approve'" in sam.split("/as sam")[0]
        assert "company" in sam and "app-02" in sam and "web-01" in sam  # salesperson reads both companies
        assert "your role (salesperson) cannot use 'vm start'" in sam
        assert f"apr-{apr} not found" in carol  # another company's admin cannot even see it
        assert "web-01" not in carol and "app-02" in carol
        assert f"approve apr-{apr}\n" in alice and "Stop (hard) web-01: approved" in alice
        assert all(name in root for name in ("web-01", "db-01", "app-02", "ct-01", "ct-02"))
        stop_job = job_ids(alice.split(f"approve apr-{apr}\n")[1])[0]
        snap_job = job_ids(dave)[0]
        assert w.job_state(stop_job) == "succeeded"
        assert w.job_state(snap_job) == "succeeded"
        assert w.sim.guest(100).status == "stopped"
        with w.sim.state.lock:
            assert "before-upgrade" in w.sim.state.guests[102].snapshots
        # the approved job reported into the request's conversation, under the approval card
        assert "(done in" in _lines_for(text, stop_job)[-1]


@pytest.mark.redis
def test_a_killed_worker_becomes_a_reported_unknown_outcome(tmp_path: Path) -> None:
    with world(tmp_path, queue="redis", task_seconds=4.0, stale_seconds=2) as w:
        session, out = w.shell("bob@acme.example")
        session.run_line("vm start db-01")
        job = job_ids(out.getvalue())[0]
        w.wait_state(job, {"running"})
        assert w.worker is not None
        w.worker.send_signal(signal.SIGKILL)
        w.worker.wait()
        deadline = time.monotonic() + 15
        while w.job_state(job) == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
            sweep(w.app.deps, stale_after=timedelta(seconds=2))
        # the start it asked for went on in Proxmox without it: not "failed", but not known either
        assert w.job_state(job) == "unknown"
        session.flush()
        assert ("❓ outcome unknown: the worker stopped while running it; what it started in Proxmox may have "
                "finished: check `vm status lab/101`") in out.getvalue()
        # nothing is stuck: a new worker takes new work
        w.start_worker()
        session.run(["vm shutdown web-01"])
        later = job_ids(out.getvalue().split("vm shutdown web-01")[1])[0]
        assert w.job_state(later) == "succeeded"


def test_a_failed_proxmox_task_is_reported(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        w.sim.faults.fail_next_task(vmid=101, message="start failed: not enough memory on pve1")
        session, out = w.shell("bob@acme.example")
        session.run(["vm start db-01"])
        job = job_ids(out.getvalue())[0]
        assert w.job_state(job) == "failed"
        last = _lines_for(out.getvalue(), job)[-1]
        assert "❌ failed" in last and "not enough memory" in last
        reader = OutboxReader(w.app.storage.engine, session.conversation.channel)
        assert reader.poll(), "the failure was posted to the conversation"


def test_a_proxmox_outage_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        session, out = w.shell("bob@acme.example")
        w.sim.stop()
        session.run(["vm list --refresh"])
        text = out.getvalue()
        assert "❌" in text and "Traceback" not in text
        assert w.server.url not in text  # no host names in chat
