"""End to end: the life of a job, from the chat command to the worker and back into the thread.

Commands go through the dispatcher (:class:`ChatDriver`) on SQLite and MariaDB; Proxmox is
:class:`FakeHypervisors`, the queue :class:`FakeQueue`, and the worker is ``jobs.run`` called here.
What the user sees is read back from the shell outbox, where every post and edit is a row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from adapters.shell.outbox import OutboxReader
from bot.bootstrap import App, Storage
from core.chat import Reply, Severity
from core.ids import show_job
from core.model import AuditEvent, Job, JobState, TaskRef, TaskStatus
from core.principal import Scope
from core.services import jobs
from tests.fakes import FakeClock, FakeHypervisor, FakeHypervisors, FakeQueue
from tests.support import ChatDriver, approval_of, job_of, provision, test_app

BOB = "bob@acme.example"
ALICE = "alice@acme.example"
CAROL = "carol@globex.example"
DAVE = "dave@globex.example"
SAM = "sam@host.example"


class BusyHypervisor(FakeHypervisor):
    """A Proxmox whose tasks are still running for ``busy_polls`` polls; ``meanwhile`` runs at each of them."""

    busy_polls = 0
    meanwhile: Callable[[], object] | None = None

    def task_status(self, task: TaskRef) -> TaskStatus:
        if self.busy_polls <= 0:
            return super().task_status(task)
        self.busy_polls -= 1
        if self.meanwhile is not None:
            self.meanwhile()
        return TaskStatus(running=True, percent=40.0, log_tail=("transferred 1.6 GiB of 4.0 GiB",))


@dataclass
class World:
    app: App
    chat: ChatDriver
    lab: BusyHypervisor
    queue: FakeQueue
    clock: FakeClock
    outbox: OutboxReader
    seen: list[tuple[str, Reply]] = field(default_factory=list)

    def job(self, job_id: str) -> Job:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            found = uow.jobs.get(job_id)
        assert found is not None
        return found

    def all_jobs(self) -> list[Job]:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            return uow.jobs.list(limit=100)

    def audit(self, action: str) -> list[AuditEvent]:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            return [e for e in uow.audit.query(limit=1000) if e.action == action]

    def messages(self, message_id: str) -> list[Reply]:
        """Every state the message went through so far, oldest first."""
        self.seen.extend((e.message_id, e.reply) for e in self.outbox.poll())
        return [reply for mid, reply in self.seen if mid == message_id]

    def posted_id(self, reply: Reply) -> str:
        """The message id the chat gave the reply just posted (the last post of it in the outbox)."""
        self.seen.extend((e.message_id, e.reply) for e in self.outbox.poll())
        return next(mid for mid, r in reversed(self.seen) if r == reply)

    def power_calls(self) -> list[tuple[str, Any]]:
        return [c for c in self.lab.calls if c[0].startswith("qm")]

    def claim(self, job_id: str) -> None:
        """What a worker does first; leaves the job running as if the worker were busy (or dead)."""
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            assert uow.jobs.claim(job_id, now=self.clock.now())
            uow.commit()


@pytest.fixture
def world(storage: Storage, clock: FakeClock) -> World:
    provision(storage)
    hypervisors = FakeHypervisors()
    lab = hypervisors.clusters["lab"] = BusyHypervisor(cluster_name="lab")
    lab.add(101, "web-01", pool="acme")
    lab.add(102, "db-01", pool="acme", status="stopped")
    lab.add(201, "gx-01", pool="globex", status="stopped")
    queue = FakeQueue()
    app = test_app(storage, hypervisors=hypervisors, queue=queue)
    chat = ChatDriver(app)
    return World(app=app, chat=chat, lab=lab, queue=queue, clock=clock,
                 outbox=OutboxReader(storage.engine, chat.conversation.channel))


def queued(world: World, command: str, *, as_: str = BOB, request_id: str | None = None) -> Job:
    answer = world.chat.ask(command, as_=as_, request_id=request_id)
    job_id = job_of(answer)
    assert job_id is not None, answer.reply.plain_text()
    return world.job(job_id)


def test_a_job_is_one_message_edited_from_queued_to_its_outcome(world: World) -> None:
    answer = world.chat.ask("vm start db-01", as_=BOB)
    reply, job_id = answer.reply, job_of(answer)

    assert job_id is not None
    label = show_job(job_id)
    assert reply.text == f"⏳ queued {label}: start db-01 (lab/102)"
    job = world.job(job_id)
    assert job.state is JobState.QUEUED and job.started_at is None
    assert world.queue.enqueued == [(jobs.RUN_JOB, job.id, {"job_id": job.id})]
    # the reply that announced the job is the job's message: the worker edits it, it posts nothing new
    assert job.message_ref["message_id"] == world.posted_id(reply) and job.conversation["thread"] is None
    assert world.power_calls() == []

    assert jobs.run(world.app.deps, job.id) == "succeeded"

    done = world.job(job.id)
    assert done.state is JobState.SUCCEEDED
    assert done.started_at == done.finished_at == world.clock.now()
    assert done.upid is not None and ":qmstart:102:" in done.upid
    # Proxmox's own "TASK OK" says nothing the state does not: it stays out of the step
    assert done.progress == "start 100%"
    assert world.power_calls() == [("qmstart", 102)]
    assert world.lab.guests[102].status == "running"
    progress = world.messages(done.message_ref["message_id"])
    assert [m.text for m in progress] == [f"⏳ queued {label}: start db-01 (lab/102)", "🔄 running (0 s)",
                                          "🔄 running start 100% (0 s)", "✅ db-01 is running (done in 0 s)"]
    assert {m.title for m in progress[1:]} == {f"{label}: start db-01 (lab/102)"}
    assert progress[-1].severity is Severity.SUCCESS
    # a Cancel button while it can be cancelled, none once it has ended
    assert all([a.command for a in m.actions] == [f"job cancel {label}"] for m in progress[1:-1])
    assert progress[-1].actions == ()
    # nothing else was posted into the conversation for this job
    world.messages("")
    assert {mid for mid, _ in world.seen} == {done.message_ref["message_id"]}
    assert [e.outcome for e in world.audit("vm.start")] == ["queued", "succeeded"]


def test_progress_of_a_long_task_is_edited_into_one_message_in_order(world: World) -> None:
    job = queued(world, "vm start db-01")
    world.lab.busy_polls = 2

    assert jobs.run(world.app.deps, job.id) == "succeeded"

    done = world.job(job.id)
    assert [m.text for m in world.messages(done.message_ref["message_id"])][1:] == [
        "🔄 running (0 s)",
        "🔄 running start 40% — transferred 1.6 GiB of 4.0 GiB (0 s)",
        "🔄 running start 40% — transferred 1.6 GiB of 4.0 GiB (0 s)",
        "🔄 running start 100% (0 s)",
        "✅ db-01 is running (done in 0 s)",
    ]


def test_cancel_a_running_job_stops_its_proxmox_task(world: World) -> None:
    job = queued(world, "vm start db-01")
    label = show_job(job.id)
    answers: list[Reply] = []

    def user_cancels() -> None:
        world.lab.meanwhile = None
        answers.append(world.chat.run(f"job cancel {label}", as_=BOB))

    world.lab.busy_polls, world.lab.meanwhile = 5, user_cancels

    assert jobs.run(world.app.deps, job.id) == "cancelled"

    # the answer is the job's own card (a Cancel button's message is replaced by it), saying it was asked
    assert [a.text.splitlines()[-1] for a in answers] == ["⏳ asked to stop; this message will say when it has"]
    assert [a.title for a in answers] == [f"{label}: start db-01 (lab/102)"]
    stopped = world.job(job.id)
    assert (stopped.state, stopped.result) == (JobState.CANCELLED, "cancelled while running")
    assert world.lab.calls[-1] == ("cancel", stopped.upid)
    assert world.messages(stopped.message_ref["message_id"])[-1].text == "⛔ cancelled: cancelled while running"


def test_a_failing_proxmox_task_fails_the_job_and_says_why(world: World) -> None:
    job = queued(world, "vm reboot web-01")
    world.lab.fail_next = "can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout"

    assert jobs.run(world.app.deps, job.id) == "failed"

    failed = world.job(job.id)
    reason = "Proxmox task reboot failed: can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout"
    assert failed.state is JobState.FAILED
    assert failed.result == reason
    last = world.messages(failed.message_ref["message_id"])[-1]
    assert last.severity is Severity.ERROR
    assert last.text == f"❌ failed: {reason}"
    [event] = [e for e in world.audit("vm.reboot") if e.outcome == "failed"]
    assert event.detail == {"job": show_job(job.id), "result": reason}
    status = world.chat.run(f"job status {show_job(job.id)}", as_=BOB)
    assert {f.label: f.value for f in status.fields}["Result"] == reason


def test_a_job_whose_vm_vanished_fails_without_touching_proxmox(world: World) -> None:
    job = queued(world, "vm start db-01")
    del world.lab.guests[102]

    assert jobs.run(world.app.deps, job.id) == "failed"
    assert world.job(job.id).result == "VM db-01 is gone or no longer yours"
    assert world.power_calls() == []


def test_a_job_delivered_twice_runs_once(world: World) -> None:
    job = queued(world, "vm shutdown web-01")

    assert jobs.run(world.app.deps, job.id) == "succeeded"
    assert jobs.run(world.app.deps, job.id) == "skipped"
    assert world.power_calls() == [("qmshutdown", 101)]
    assert [e.outcome for e in world.audit("vm.shutdown")] == ["queued", "succeeded"]


def test_a_job_delivered_to_several_workers_at_once_runs_once(world: World) -> None:
    job = queued(world, "vm shutdown web-01")
    barrier = threading.Barrier(4)
    results: list[str] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        results.append(jobs.run(world.app.deps, job.id))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert sorted(results) == ["skipped", "skipped", "skipped", "succeeded"]
    assert world.power_calls() == [("qmshutdown", 101)]


def test_a_redelivered_command_gives_the_same_job(world: World) -> None:
    first = job_of(world.chat.ask("vm start db-01", as_=BOB, request_id="slack-evt-42"))
    again = world.chat.ask("vm start db-01", as_=BOB, request_id="slack-evt-42")

    assert first is not None
    assert again.reply.text == f"already received: {show_job(first)} (queued)"
    assert again.followups == ()  # so that posting it starts nothing
    assert len(world.all_jobs()) == 1
    assert len(world.queue.enqueued) == 1


def test_a_command_redelivered_while_the_first_is_still_in_progress_gives_the_same_job(world: World) -> None:
    # a platform retries a slow answer: the same event arrives again before the first one is done
    barrier = threading.Barrier(6)
    answers: list[Reply] = []

    def deliver() -> None:
        barrier.wait(timeout=10)
        answers.append(world.chat.run("vm start db-01", as_=BOB, request_id="slack-evt-7"))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    [job] = world.all_jobs()
    texts = sorted(a.text for a in answers)
    assert texts == sorted([f"⏳ queued {show_job(job.id)}: start db-01 (lab/102)"]
                           + [f"already received: {show_job(job.id)} (queued)"] * 5)
    assert len(world.queue.enqueued) == 1
    assert [e.outcome for e in world.audit("vm.start")] == ["queued"]


def test_job_status_and_list(world: World) -> None:
    job = queued(world, "vm start db-01")
    other = queued(world, "vm shutdown web-01", as_=ALICE)

    status = world.chat.run(f"job status {show_job(job.id)}", as_=BOB)
    assert status.title == f"{show_job(job.id)}: start db-01 (lab/102)"
    assert status.text == "⏳ queued"
    assert {f.label: f.value for f in status.fields} == {
        "State": "queued", "Queued": "just now, 09:00 UTC", "Running for": "0 s"}

    world.clock.advance(minutes=3)
    jobs.run(world.app.deps, job.id)
    status = world.chat.run(f"job status {job.id}", as_=BOB)  # the bare id works too
    fields = {f.label: f.value for f in status.fields}
    assert (fields["State"], fields["Took"], fields["Result"]) == ("succeeded", "0 s", "db-01 is running")
    assert fields["Proxmox task"] == world.job(job.id).upid

    listed = world.chat.run("job list", as_=BOB)
    assert listed.table is not None
    # what it is first, then its state, a date that cannot be misread (today/yesterday or with the year)
    assert sorted(listed.table.rows) == sorted([
        ("start db-01 (lab/102)", "succeeded", "today 09:00", show_job(job.id)),
        ("shut down web-01 (lab/101)", "queued", "today 09:00", show_job(other.id)),
    ])
    world.clock.advance(days=1)
    assert {row[2] for row in world.chat.run("job list", as_=BOB).table.rows} == {"yesterday 09:00"}  # type: ignore[union-attr]
    world.clock.advance(days=1)
    assert {row[2] for row in world.chat.run("job list", as_=BOB).table.rows} == {"2026-11-21 09:00"}  # type: ignore[union-attr]
    active = world.chat.run("job list --active", as_=BOB)
    assert active.table is not None
    assert [row[-1] for row in active.table.rows] == [show_job(other.id)]
    # a salesperson assigned to acme reads acme's jobs
    sales = world.chat.run("job list", as_=SAM)
    assert sales.table is not None and len(sales.table.rows) == 2


def test_cancel_a_queued_job(world: World) -> None:
    job = queued(world, "vm start db-01")

    answer = world.chat.run(f"job cancel {show_job(job.id)}", as_=BOB)

    # the answer is the job's own card, as its message now shows it
    assert answer.severity is Severity.WARNING
    assert answer.text == "⛔ cancelled: cancelled by Bob User" and answer.title.startswith(show_job(job.id))
    cancelled = world.job(job.id)
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.result == "cancelled by Bob User"
    assert world.queue.cancelled == [job.id]
    assert world.messages(cancelled.message_ref["message_id"])[-1].text == "⛔ cancelled: cancelled by Bob User"
    [event] = world.audit("job.cancel")
    assert (event.actor, event.target) == (BOB, show_job(job.id))
    # the queue may still deliver it: it does not run
    assert jobs.run(world.app.deps, job.id) == "skipped"
    assert world.power_calls() == []
    again = world.chat.run(f"job cancel {show_job(job.id)}", as_=BOB)
    assert again.text == f"{show_job(job.id)} already cancelled"
    assert world.chat.run(f"job cancel {show_job(job.id)}", as_=SAM).text == \
        "your role (salesperson) cannot use 'job cancel'"


def test_cancel_a_running_job_asks_its_worker(world: World) -> None:
    job = queued(world, "vm start db-01")
    world.claim(job.id)

    answer = world.chat.run(f"job cancel {show_job(job.id)}", as_=ALICE)

    assert answer.text.splitlines()[-1] == "⏳ asked to stop; this message will say when it has"
    assert answer.title == f"{show_job(job.id)}: start db-01 (lab/102)" and answer.progress_of == job.id
    stored = world.job(job.id)
    assert stored.state is JobState.RUNNING and stored.cancel_requested


def test_the_reaper_settles_jobs_whose_worker_died_as_outcome_unknown(world: World) -> None:
    dead = queued(world, "vm start db-01")
    alive = queued(world, "vm shutdown web-01")
    world.claim(dead.id)
    world.clock.advance(minutes=20)
    world.claim(alive.id)

    assert jobs.reap(world.app.deps, stale_after=timedelta(minutes=10)) == 1

    # the Proxmox task it had started went on without it: "failed" would be a guess (issue 12, item 7)
    reaped = world.job(dead.id)
    why = "the worker stopped while running it; what it started in Proxmox may have finished: check `vm status lab/102`"
    assert reaped.state is JobState.UNKNOWN
    assert reaped.result == why
    last = world.messages(reaped.message_ref["message_id"])[-1]
    assert last.text == f"❓ outcome unknown: {why}"
    assert reaped.message_ref["conversation"]["thread"] == dead.conversation["thread"]
    assert world.job(alive.id).state is JobState.RUNNING
    assert [e.outcome for e in world.audit("vm.start")] == ["queued", "unknown"]
    # the dead worker's job is not run again by a late delivery
    assert jobs.run(world.app.deps, dead.id) == "skipped"


def test_the_reaper_fails_jobs_that_were_never_started(world: World) -> None:
    lost = queued(world, "vm start db-01")
    world.clock.advance(minutes=5)
    fresh = queued(world, "vm shutdown web-01")

    count = jobs.reap(world.app.deps, stale_after=timedelta(minutes=10), start_timeout=timedelta(minutes=5))

    assert count == 1
    assert world.job(lost.id).result == "never started within 5 min: no worker took it; nothing was done"
    assert world.job(fresh.id).state is JobState.QUEUED
    assert jobs.run(world.app.deps, lost.id) == "skipped"


def test_a_reaper_and_a_finishing_worker_settle_a_job_once(world: World) -> None:
    job = queued(world, "vm start db-01")
    world.claim(job.id)
    world.clock.advance(minutes=20)
    assert jobs.reap(world.app.deps, stale_after=timedelta(minutes=10)) == 1
    # the worker was only slow, and now finishes: the reaper's verdict stands, nothing is audited twice
    late = world.job(job.id)
    assert jobs._finish(world.app.deps, late, JobState.SUCCEEDED, "done") is False
    assert world.job(job.id).state is JobState.UNKNOWN
    assert [e.outcome for e in world.audit("vm.start")] == ["queued", "unknown"]


def test_cancelling_the_job_of_an_approval_closes_the_approval(world: World) -> None:
    approval_id = approval_of(world.chat.ask("vm delete db-01", as_=BOB))
    assert approval_id is not None
    world.chat.run(f"approve apr-{approval_id}", as_=ALICE)
    [job] = world.all_jobs()
    world.chat.run(f"job cancel {show_job(job.id)}", as_=BOB)
    with world.app.deps.uow_factory(Scope.everything()) as uow:
        approval = uow.approvals.get(approval_id)
    assert approval is not None and approval.state.value == "failed"
    assert [e.target.split()[0] for e in world.audit("approval.failed")] == [f"apr-{approval_id}"]


def test_another_company_cannot_see_or_cancel_a_job(world: World) -> None:
    job = queued(world, "vm start db-01")
    label = show_job(job.id)
    mine = queued(world, "vm start gx-01", as_=DAVE)

    for who in (CAROL, DAVE):
        assert world.chat.run(f"job status {label}", as_=who).text == f"{label} not found"
        assert world.chat.run(f"job cancel {label}", as_=who).text == f"{label} not found"
        listed = world.chat.run("job list", as_=who)
        assert listed.table is not None
        assert [row[-1] for row in listed.table.rows] == [show_job(mine.id)]
    assert world.job(job.id).state is JobState.QUEUED
    # and bob cannot see globex's
    assert world.chat.run(f"job status {show_job(mine.id)}", as_=BOB).text == f"{show_job(mine.id)} not found"
