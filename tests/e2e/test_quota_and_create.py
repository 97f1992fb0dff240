"""Quotas hold under concurrency, sizes are checked before anything is cloned, and a create that fails
halfway does not leave its clone behind unreported. On SQLite and on MariaDB, through the dispatcher."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.bootstrap import App, Storage
from core.errors import ExternalSystemError
from core.model import GuestRef, JobState, TaskRef
from core.ports import ConfigChange, Hypervisor
from core.principal import Scope
from core.services import jobs
from tests.e2e import shell_world
from tests.fakes import FakeClock, FakeHypervisor, FakeHypervisors, FakeQueue
from tests.proxmox_support import wait_task
from tests.support import STANDARD_DOC, ChatDriver, job_of, provision, test_app

BOB = "bob@acme.example"
DOC = STANDARD_DOC.replace("quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}", "quotas: {vms: 10}")


class FlakyConfigure(FakeHypervisor):
    """Clones fine; a configuration change then fails, as a storage or schema refusal would."""

    fail_configure = False

    def configure(self, ref: GuestRef, change: ConfigChange) -> TaskRef:
        if self.fail_configure:
            raise ExternalSystemError("Proxmox refused the change: memory out of range")
        return super().configure(ref, change)


@dataclass
class World:
    app: App
    chat: ChatDriver
    lab: FlakyConfigure
    queue: FakeQueue

    def run_queue(self) -> list[str]:
        return [jobs.run(self.app.deps, job_id) for _, job_id, _ in self.queue.enqueued]


@pytest.fixture
def world(storage: Storage, clock: FakeClock) -> World:
    assert "quotas: {vms: 10}" in DOC
    provision(storage, DOC)
    hypervisors = FakeHypervisors()
    lab = hypervisors.clusters["lab"] = FlakyConfigure(cluster_name="lab")
    for i in range(6):
        lab.add(101 + i, f"acme-{i}", pool="acme")
    lab.add(9000, "tmpl-debian", pool=None, template=True)
    queue = FakeQueue()
    app = test_app(storage, hypervisors=hypervisors, queue=queue)
    return World(app=app, chat=ChatDriver(app), lab=lab, queue=queue)


def test_concurrent_creates_never_pass_the_quota(world: World) -> None:
    answers: list[str] = []
    start = threading.Barrier(7)

    def create(i: int) -> None:
        start.wait()
        answer = world.chat.ask(f"vm create new-{i} --template tmpl-debian", as_=BOB)
        answers.append("queued" if job_of(answer) else answer.reply.text)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert answers.count("queued") == 4, answers  # 6 VMs, a quota of 10
    refused = [a for a in answers if a != "queued"]
    assert all(a.startswith("quota exceeded: vms would be 11 of 10 (in use 6, 4 being created)") for a in refused), \
        refused
    # each job checks again when it runs, counting its queued elders once and its own clone not yet
    assert world.run_queue() == ["succeeded"] * 4
    acme = [g for g in world.lab.guests.values() if g.pool == "acme"]
    assert len(acme) == 10


def test_a_size_proxmox_would_refuse_is_refused_before_anything_is_cloned(world: World) -> None:
    answer = world.chat.ask("vm create tiny --template tmpl-debian --memory 1M", as_=BOB)
    assert answer.reply.text == "memory must be from 16M to 4T, got 1M"
    assert not world.queue.enqueued and not [c for c in world.lab.calls if c[0] == "qmclone"]


def test_a_create_that_fails_after_cloning_removes_its_clone_and_says_so(world: World) -> None:
    world.lab.fail_configure = True
    answer = world.chat.ask("vm create app-02 --template tmpl-debian --cores 4", as_=BOB)
    job_id = job_of(answer)
    assert job_id is not None

    assert world.run_queue() == ["failed"]

    with world.app.deps.uow_factory(Scope.everything()) as uow:
        job = uow.jobs.get(job_id)
    assert job is not None and job.state is JobState.FAILED
    assert "Proxmox refused the change" in job.result
    assert "undone: remove the half-made app-02" in job.result, job.result
    assert not [g for g in world.lab.guests.values() if g.name == "app-02"]  # not left counting against the quota
    assert [c for c in world.lab.calls if c[0] == "qmdestroy"] == [("qmdestroy", 9001)]


# ---- the same on the real parts: the Proxmox simulator over HTTPS, a real worker process -------------------


def _operator(w: shell_world.World) -> Hypervisor:
    """The cluster as an operator reaches it outside pvebot (Proxmox's own UI, its API)."""
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name("lab")
    assert cluster is not None
    return w.app.deps.hypervisors.for_cluster(cluster)


def _acme(w: shell_world.World) -> list[str]:
    with w.sim.state.lock:
        return sorted(g.name for g in w.sim.state.guests.values() if g.pool == "acme")


@pytest.mark.slow
def test_a_queued_create_checks_the_quota_again_when_it_runs(tmp_path: Path) -> None:
    # acme has 3 guests of a quota of 10; the create waits in Redis until a worker comes up
    with shell_world.world(tmp_path, queue="redis", start_worker=False) as w:
        session, out = w.shell(BOB)
        session.wait_seconds = 0
        session.run(["vm create app-09 --template tmpl-deb"])
        [job] = shell_world.job_ids(out.getvalue())
        assert w.job_state(job) == "queued"
        # meanwhile an operator fills the quota outside pvebot
        pve = _operator(w)
        tpl = GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=9000)
        for i in range(7):
            assert wait_task(pve, pve.clone(tpl, newid=pve.next_vmid(), name=f"by-hand-{i}", pool="acme")).ok
        assert len(_acme(w)) == 10

        w.start_worker()
        assert w.wait_state(job, {"failed", "succeeded"}, timeout=30) == "failed"
        with w.app.deps.uow_factory(Scope.everything()) as uow:
            stored = uow.jobs.get(job)
        assert stored is not None and stored.result.startswith("quota exceeded: vms would be 11 of 10"), stored.result
        assert "app-09" not in _acme(w) and len(_acme(w)) == 10
        assert not [r for r in w.sim.requests if r.method == "POST" and r.path.endswith("/9000/clone")][7:]


@pytest.mark.slow
def test_a_create_whose_resize_proxmox_fails_removes_its_clone_and_says_so(tmp_path: Path) -> None:
    with shell_world.world(tmp_path, queue="embedded") as w:
        newid = _operator(w).next_vmid()
        # Proxmox refuses the resize of the new clone (a full volume group, a storage error)
        w.sim.faults.http_500(f"/nodes/pve1/qemu/{newid}/resize", count=10, message="no space left on volume group")
        session, out = w.shell(BOB)
        session.run(["vm create app-09 --template tmpl-deb --disk +10G"])
        answer = out.getvalue()
        assert "❌ failed" in answer and "no space left on volume group" in answer, answer
        assert "undone: remove the half-made app-09" in answer, answer
        assert "app-09" not in _acme(w)  # not left behind, not counted against the quota
        with w.sim.state.lock:
            assert newid not in w.sim.state.guests
        [job] = shell_world.job_ids(answer)
        assert w.job_state(job) == "failed"
