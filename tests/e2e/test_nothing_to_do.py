"""A power action with nothing to do is answered at once, from Proxmox's own answer, and queues nothing.

Starting a running VM or stopping a stopped one used to queue a job that Proxmox then failed ("VM 100
already running"), or worse, to ask an approver to allow a stop of a VM that was not running. The cached
inventory says when there may be nothing to do; only then is Proxmox asked, and only its answer refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from core.principal import Scope
from tests.e2e.shell_world import World, job_ids, world

pytestmark = pytest.mark.slow

BOB, ALICE = "bob@acme.example", "alice@acme.example"


def _run(w: World, email: str, *lines: str, wait_seconds: float = 30) -> str:
    session, out = w.shell(email, wait_seconds=wait_seconds)
    session.run(list(lines))
    return out.getvalue()


def _nothing_recorded(w: World) -> bool:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        return not uow.jobs.list() and not uow.approvals.list()


def test_a_power_action_with_nothing_to_do_is_refused_at_once_and_records_nothing(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        said = {
            # web-01 (100) runs, db-01 (101) is stopped, ct-01 (200) is a running container
            "vm start web-01": "❌ web-01 (lab/100) is already running",
            "vm shutdown db-01": "❌ db-01 (lab/101) is already stopped",
            "vm reboot db-01": "❌ db-01 (lab/101) is stopped; start it with vm start",
            "vm suspend db-01": "❌ db-01 (lab/101) is stopped; there is nothing to suspend",
            "vm resume db-01": "❌ db-01 (lab/101) is stopped; start it with vm start",
            "vm start ct-01": "❌ ct-01 (lab/200) is already running",
        }
        for line, answer in said.items():
            out = _run(w, BOB, line)
            assert answer in out and not job_ids(out), (line, out)
        # the hard ones need an approver: none is asked to allow what would do nothing
        for line, answer in {"vm stop db-01": "❌ db-01 (lab/101) is already stopped",
                             "vm reset db-01": "❌ db-01 (lab/101) is stopped; start it with vm start"}.items():
            out = _run(w, ALICE, line)
            assert answer in out and "apr-" not in out, (line, out)
        assert _nothing_recorded(w)

        with w.sim.state.lock:
            w.sim.guest(100).qmpstatus = "paused"
        assert "❌ web-01 (lab/100) is paused; resume it with vm resume" in _run(w, BOB, "vm start web-01")


def test_what_the_inventory_says_is_checked_with_proxmox_before_anyone_is_refused(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        assert "web-01" in _run(w, BOB, "vm list")  # the inventory, cached: web-01 runs
        with w.sim.state.lock:
            w.sim.guest(100).set_running(False)  # stopped behind pvebot's back, seconds ago
        out = _run(w, BOB, "vm start web-01")
        [job] = job_ids(out)
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        assert w.sim.guest(100).status == "running"


def test_a_start_the_inventory_sees_work_for_asks_proxmox_nothing_more(tmp_path: Path) -> None:
    with world(tmp_path, queue="redis", start_worker=False) as w:  # queued, not run: the request's calls alone
        assert "db-01" in _run(w, BOB, "vm list")
        before = len(w.sim.requests)
        assert len(job_ids(_run(w, BOB, "vm start db-01", wait_seconds=0))) == 1
        asked = [r.path.rsplit("/", 2)[-2:] for r in w.sim.requests[before:]]
        assert asked == [["101", "config"]], asked  # who the guest is, pinned for the job; no status
