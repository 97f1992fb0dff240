"""Quotas hold under concurrency, sizes are checked before anything is cloned, and a create that fails
halfway does not leave its clone behind unreported. On SQLite and on MariaDB, through the dispatcher."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from bot.bootstrap import App, Storage
from core.errors import ExternalSystemError
from core.model import GuestRef, JobState, TaskRef
from core.ports import ConfigChange
from core.principal import Scope
from core.services import jobs
from tests.fakes import FakeClock, FakeHypervisor, FakeHypervisors, FakeQueue
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
