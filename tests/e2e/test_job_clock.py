"""The job runner keeps time through the Clock port: its timeout and its one-edit-a-second coalescing are
shown here with a fake clock, so a 60-second timeout takes no real minute."""

from __future__ import annotations

import pytest

from adapters.shell.outbox import OutboxReader
from bot.bootstrap import Storage
from core.model import JobState
from core.services import jobs
from tests.e2e.test_jobs import BusyHypervisor, World, queued
from tests.fakes import FakeClock, FakeHypervisors, FakeQueue
from tests.support import ChatDriver, provision, test_app


def _world(storage: Storage, clock: FakeClock, *, progress_interval: float, poll_interval: float) -> World:
    provision(storage)
    hypervisors = FakeHypervisors()
    lab = hypervisors.clusters["lab"] = BusyHypervisor(cluster_name="lab")
    lab.add(102, "db-01", pool="acme", status="stopped")
    queue = FakeQueue()
    app = test_app(storage, hypervisors=hypervisors, queue=queue, progress_interval=progress_interval,
                   poll_interval=poll_interval)
    chat = ChatDriver(app)
    return World(app=app, chat=chat, lab=lab, queue=queue, clock=clock,
                 outbox=OutboxReader(storage.engine, chat.conversation.channel))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_task_that_never_ends_times_the_job_out_on_the_fake_clock(storage: Storage, clock: FakeClock) -> None:
    world = _world(storage, clock, progress_interval=1.0, poll_interval=0.5)
    job = queued(world, "vm start db-01")
    world.lab.busy_polls = 10**9
    start = clock.now()

    assert jobs.run(world.app.deps, job.id) == "failed"

    done = world.job(job.id)
    assert done.state is JobState.FAILED
    assert done.result == "timed out after 60 s; the Proxmox task may still run"
    waited = (clock.now() - start).total_seconds()
    assert 60 <= waited <= 61  # the fake clock moved as the polling would have waited, no further


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_progress_is_edited_at_most_once_a_second_of_the_clock(storage: Storage, clock: FakeClock) -> None:
    world = _world(storage, clock, progress_interval=1.0, poll_interval=0.25)
    job = queued(world, "vm start db-01")
    world.lab.busy_polls = 40  # about ten seconds of polling at a quarter second
    start = clock.now()

    assert jobs.run(world.app.deps, job.id) == "succeeded"

    seconds = (clock.now() - start).total_seconds()
    edits = world.messages(world.job(job.id).message_ref["message_id"])[1:]  # after the "queued" reply
    # the first post and the final verdict are forced; in between at most one per second
    assert 3 <= len(edits) <= seconds + 2, (len(edits), seconds)
    assert edits[-1].text.endswith(("(done in 10 s)", "(done in 9 s)")), edits[-1].text
