"""A ``--vms`` schedule keeps to its company's guests between runs, on SQLite and MariaDB.

The shell adapter, the maintenance loop's pass and the outbox against the simulator over HTTPS. Proxmox's
own scheduler is played by the simulator running the job's stored selection (``run_backup_job``), as
pvescheduler does at the job's slot: what it backs up is what the job says, not what pvebot would pick.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from adapters.shell.session import ShellSession
from adapters.sql import migrate
from bot.bootstrap import build_maintenance
from core.principal import Scope
from core.services import outbox
from tests.e2e.shell_world import World, world
from tests.support import mariadb_database

pytestmark = pytest.mark.slow

ALICE, CAROL = "alice@acme.example", "carol@globex.example"
JOB = "pvebot-acme-nightly"


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None  # the world's own SQLite file
        return
    with mariadb_database() as url:
        migrate.upgrade(sa.create_engine(url))
        yield url


@contextmanager
def acme_world(tmp_path: Path, database_url: str | None) -> Iterator[World]:
    with world(tmp_path, queue="embedded", database_url=database_url) as w:
        w.sim.add_storage("backup-nfs", content="backup", shared=True)
        yield w


def _job(w: World) -> dict[str, str]:
    with w.sim.state.lock:
        return dict(w.sim.state.backup_jobs[JOB])


def _move(w: World, vmid: int, pool: str) -> None:
    """The provider moves the guest to another pool, outside pvebot."""
    with w.sim.state.lock:
        w.sim.state.guests[vmid].pool = pool


def _volids(w: World, vmid: int) -> list[str]:
    with w.sim.state.lock:
        return sorted(b.volid for b in w.sim.state.backups.values() if b.vmid == vmid)


def _scheduler_runs(w: World) -> None:
    """Proxmox's scheduler at the job's slot: the job's stored selection, on every node, to its end."""
    upids = w.sim.run_backup_job(JOB)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with w.sim.state.lock:
            if all(not w.sim.tasks.tasks[u].running for u in upids):
                return
        time.sleep(0.05)
    raise AssertionError("the scheduled run did not finish")


def _reconcile_audits(w: World) -> list[dict[str, object]]:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        return [e.detail for e in uow.audit.query(limit=200) if e.action == "backup.schedule.reconcile"]


def _delivered(w: World, shell: ShellSession, out: io.StringIO, text: str) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        outbox.deliver_due(w.app.deps)
        shell.flush()
        if text in out.getvalue():
            return out.getvalue()
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never delivered: {out.getvalue()}")


def _subscribed(w: World, email: str) -> tuple[ShellSession, io.StringIO]:
    shell, out = w.shell(email)
    shell.run(["notify subscribe backups"])
    return shell, out


def test_a_vm_moved_to_another_company_leaves_the_schedule_on_the_next_pass(
        tmp_path: Path, database_url: str | None) -> None:
    with acme_world(tmp_path, database_url) as w:
        alice, out = _subscribed(w, ALICE)
        carol, carol_out = _subscribed(w, CAROL)
        alice.run(['backup schedule create nightly --when "daily 02:00" --vms web-01,db-01'])
        created = _job(w)
        assert created["vmid"] == "100,101"
        _move(w, 101, "globex")
        # the hole: left as it is, Proxmox's scheduler backs up globex's guest for acme
        _scheduler_runs(w)
        assert len(_volids(w, 101)) == 1

        maintenance = build_maintenance(w.app)
        changed = maintenance.reconcile_schedules()
        assert [(c.job_id, c.dropped, c.kept, c.disabled) for c in changed] == [(JOB, (101,), (100,), False)]
        job = _job(w)
        assert job["vmid"] == "100" and job.get("enabled", "1") == "1"
        assert {k: v for k, v in job.items() if k != "vmid"} == {k: v for k, v in created.items() if k != "vmid"}
        _scheduler_runs(w)
        assert len(_volids(w, 101)) == 1 and len(_volids(w, 100)) == 2  # 101 no more, 100 still

        # audited, and told to acme's backups channel with the VMID and why, naming nothing of globex's
        [detail] = _reconcile_audits(w)
        assert detail["dropped"] == [101] and detail["kept"] == [100] and detail["disabled"] is False
        text = _delivered(w, alice, out, "VMID 101 removed (no longer in your company's pools)")
        notice = text[text.index("schedule nightly on lab: VMID 101"):]
        assert "It still backs up VMID 100" in notice
        for other in ("globex", "Globex", "Carol", "app-02", "ct-02"):
            assert other not in notice, notice
        carol.flush()
        assert "VMID 101" not in carol_out.getvalue()  # globex's channel hears nothing of acme's job

        # a second pass finds nothing to do, and says nothing
        assert maintenance.reconcile_schedules() == []
        assert len(_reconcile_audits(w)) == 1


def test_a_schedule_left_with_none_of_its_vms_is_disabled_selecting_only_its_pool(
        tmp_path: Path, database_url: str | None) -> None:
    with acme_world(tmp_path, database_url) as w:
        alice, out = _subscribed(w, ALICE)
        alice.run(['backup schedule create nightly --when "daily 02:00" --vms db-01'])
        _move(w, 101, "globex")
        [done] = build_maintenance(w.app).reconcile_schedules()
        assert done.disabled and done.kept == () and done.pool == "acme"
        job = _job(w)
        # Proxmox keeps no job without a selection; the pool's is the one that reaches acme's guests only
        assert job["enabled"] == "0" and job["pool"] == "acme" and "vmid" not in job
        before = (len(_volids(w, 100)), len(_volids(w, 101)))
        assert w.sim.run_backup_job(JOB) == []  # the scheduler skips a disabled job: nothing runs at all
        assert (len(_volids(w, 100)), len(_volids(w, 101))) == before

        text = _delivered(w, alice, out, "schedule nightly on lab disabled: VMID 101 no longer in your company's pools")
        assert "backup schedule edit nightly --vms" in text and "globex" not in text.lower()
        alice.run(["backup schedule list"])
        assert "all VMs of pool acme" in out.getvalue()
        [detail] = _reconcile_audits(w)
        assert detail["disabled"] is True and detail["pool"] == "acme"

        # choosing its VMs again enables it
        alice.run(["backup schedule edit nightly --vms web-01"])
        job = _job(w)
        assert job["vmid"] == "100" and job["enabled"] == "1" and "pool" not in job


def test_an_unreachable_cluster_or_a_stale_answer_changes_nothing(tmp_path: Path, database_url: str | None) -> None:
    with acme_world(tmp_path, database_url) as w:
        alice, out = w.shell(ALICE)
        alice.run(['backup schedule create nightly --when "daily 02:00" --vms web-01,db-01'])
        maintenance = build_maintenance(w.app)
        _move(w, 101, "globex")
        alice.run(["vm list --refresh"])  # the inventory pvebot keeps now says VMID 101 is in globex's pool
        _move(w, 101, "acme")  # and it is back: that answer is stale, and the pass must not act on it
        assert maintenance.reconcile_schedules() == []
        assert _job(w)["vmid"] == "100,101"
        _move(w, 101, "globex")
        # the job list or the inventory does not come: nothing is changed, audited or announced
        for path in ("/cluster/backup", "/cluster/resources"):
            w.sim.faults.http_500(path, count=1)
            assert maintenance.reconcile_schedules() == []
            assert _job(w)["vmid"] == "100,101"
            assert w.sim.faults.take_500(path) is None  # the pass met the failure itself
        assert _reconcile_audits(w) == []
        _move(w, 101, "acme")
        # a VMID no guest holds (deleted outside pvebot): whose it is is unknown, so it stays
        with w.sim.state.lock:
            del w.sim.state.guests[101]
        assert maintenance.reconcile_schedules() == []
        assert _job(w)["vmid"] == "100,101"
        # once a guest of another company holds it, the answer says so and it goes
        w.sim.add_guest(vmid=101, name="other-01", kind="qemu", node="pve2", pool="globex", status="stopped")
        [done] = maintenance.reconcile_schedules()
        assert done.dropped == (101,) and _job(w)["vmid"] == "100"


def test_another_process_holding_the_cluster_leaves_it_alone(tmp_path: Path) -> None:
    with acme_world(tmp_path, None) as w:
        alice, _ = w.shell(ALICE)
        alice.run(['backup schedule create nightly --when "daily 02:00" --vms web-01,db-01'])
        _move(w, 101, "globex")
        holder = build_maintenance(w.app)
        assert holder.poll_events() >= 0  # takes the cluster's lease
        other = build_maintenance(w.app)
        other.owner = "another-host:4242"
        assert other.reconcile_schedules() == []
        assert _job(w)["vmid"] == "100,101"
        assert [c.dropped for c in holder.reconcile_schedules()] == [(101,)]


def test_the_running_maintenance_loop_narrows_the_job_by_itself(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded", extra_env={"PVEBOT_SCHEDULE_CHECK_SECONDS": "1"}) as w:
        alice, _ = w.shell(ALICE)
        alice.run(['backup schedule create nightly --when "daily 02:00" --vms web-01,db-01'])
        _move(w, 101, "globex")
        maintenance = build_maintenance(w.app).start()
        try:
            deadline = time.monotonic() + 15
            while _job(w)["vmid"] != "100" and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            maintenance.stop()
        assert _job(w)["vmid"] == "100"
