"""The one delivery path, and no job waiting forever: on real queues (embedded RQ, Redis), SQLite and MariaDB.

What the user reads comes back from the shell outbox; jobs are read from the database. Redis is the
shared test server (``REDIS_URL``) with a queue name of each test's own, or, where Redis must refuse,
a ``redis-server`` this module starts on a free loopback port and stops again.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from redis import Redis

from adapters.queue import EmbeddedQueue, RqJobQueue, owner_gone
from adapters.shell.outbox import OutboxReader
from bot.bootstrap import App, Storage, build_app, build_maintenance
from bot.config import Settings
from bot.logs import configure
from core.chat import Answer, Reply, StartJob
from core.ids import show_job
from core.model import Job, JobState, TaskRef, TaskStatus
from core.principal import Scope
from core.services import jobs
from tests.fakes import FakeClock, FakeHypervisor, FakeHypervisors, FakeQueue
from tests.support import REDIS_URL, ChatDriver, job_of, provision, service_missing, test_app

BOB = "bob@acme.example"


class GatedHypervisor(FakeHypervisor):
    """Tasks run until ``gate`` opens: the worker holding one is busy, so the next job waits queued."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()
        self.busy = threading.Event()

    def task_status(self, task: TaskRef) -> TaskStatus:
        self.busy.set()
        if not self.gate.wait(timeout=30):
            return TaskStatus(running=False, exitstatus="gate never opened")
        return super().task_status(task)


def hypervisors(lab: FakeHypervisor | None = None) -> FakeHypervisors:
    hv = FakeHypervisors()
    if lab is not None:
        hv.clusters["lab"] = lab
    lab = hv.cluster("lab")
    lab.add(101, "web-01", pool="acme")
    lab.add(102, "db-01", pool="acme", status="stopped")
    return hv


def stored(app: App, job_id: str) -> Job:
    with app.deps.uow_factory(Scope.everything()) as uow:
        job = uow.jobs.get(job_id)
    assert job is not None
    return job


def said(app: App, chat: ChatDriver) -> list[str]:
    """Everything posted or edited in the chat's conversation, as plain text, oldest first."""
    return [e.reply.plain_text() for e in OutboxReader(app.storage.engine, chat.conversation.channel).poll()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OwnRedis:
    """A redis-server of this test's own, so that it can be stopped without touching the shared one."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        service_missing("redis-server", FileNotFoundError("redis-server"))
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = OwnRedis(url=f"redis://127.0.0.1:{port}/0", process=process)
    probe = Redis.from_url(server.url)
    try:
        for _ in range(200):  # bounded: it answers within a few ms once it listens
            try:
                probe.ping()
                break
            except Exception:
                threading.Event().wait(0.05)
        else:
            pytest.fail("the test's own redis-server did not start")
        yield server
    finally:
        probe.close()
        server.stop()


# ---- the post fails ----------------------------------------------------------------------


def test_a_reply_that_cannot_be_posted_fails_its_job_and_nothing_runs(storage: Storage) -> None:
    provision(storage)
    hv = hypervisors()
    app = test_app(storage, hypervisors=hv)  # the embedded queue, with its worker threads
    try:
        chat = ChatDriver(app)
        answer = chat.ask("vm start db-01", as_=BOB, post=False)
        job_id = job_of(answer)
        assert job_id is not None

        def post(reply: Reply) -> None:
            raise ConnectionError("chat is down")

        with pytest.raises(ConnectionError):
            app.dispatcher.deliver(answer, post)

        job = stored(app, job_id)
        assert job.state is JobState.FAILED
        assert job.result == f"{show_job(job_id)} was not started: its reply could not be posted; nothing was done"
        assert isinstance(app.queue, EmbeddedQueue) and app.queue.pending() == 0
        assert [c for c in hv.cluster("lab").calls if c[0].startswith("qm")] == []  # no Proxmox task
    finally:
        app.close()


# ---- Redis refuses the enqueue -------------------------------------------------------------


def test_when_redis_refuses_the_enqueue_the_user_is_told_and_the_job_is_failed(
    storage: Storage, own_redis: OwnRedis
) -> None:
    provision(storage)
    queue = RqJobQueue(Redis.from_url(own_redis.url), name=f"pvebot-t-{uuid.uuid4().hex[:8]}")
    app = test_app(storage, hypervisors=hypervisors(), queue=queue)
    try:
        chat = ChatDriver(app)
        first = job_of(chat.ask("vm start db-01", as_=BOB))
        assert first is not None and stored(app, first).state is JobState.QUEUED  # Redis took it

        own_redis.stop()
        second = job_of(chat.ask("vm shutdown web-01", as_=BOB))
        assert second is not None

        job = stored(app, second)
        why = f"could not queue {show_job(second)}: the job queue is unavailable; nothing was done"
        assert job.state is JobState.FAILED and job.result == why
        # the user read "queued" first, then, in that very message, that it could not be
        texts = said(app, chat)
        assert any(t.startswith(f"⏳ queued {show_job(second)}") for t in texts)
        assert any(why in t for t in texts), texts
        assert job.conversation["thread"] is None and job.message_ref is not None
    finally:
        app.close()


def test_a_redis_that_stops_answering_is_an_outage_not_a_wait_forever(storage: Storage, own_redis: OwnRedis) -> None:
    # a Redis host that hangs (paused, swapped out, a network that drops packets) keeps the TCP
    # connection open and never answers: every Redis call of serve must give up, as one that refuses does
    provision(storage)
    settings = Settings.from_mapping({**dict(storage.settings.env), "PVEBOT_REDIS_URL": own_redis.url,
                                      "PVEBOT_QUEUE": f"pvebot-t-{uuid.uuid4().hex[:8]}"})
    app = build_app(settings, storage=storage, hypervisors=hypervisors(), progress_interval=0.0, poll_interval=0.01)
    try:
        assert isinstance(app.queue, RqJobQueue)  # the composition root's own Redis connection
        # said, not left to redis-py's default: that is no timeout at all before redis-py 8.0
        assert app.queue.connection.connection_pool.connection_kwargs.get("socket_timeout")
        chat = ChatDriver(app)
        first = job_of(chat.ask("vm start db-01", as_=BOB))
        assert first is not None and stored(app, first).state is JobState.QUEUED  # Redis took it

        own_redis.process.send_signal(signal.SIGSTOP)
        answered: list[str | None] = []
        asking = threading.Thread(target=lambda: answered.append(job_of(chat.ask("vm shutdown web-01", as_=BOB))),
                                  daemon=True)
        asking.start()
        asking.join(timeout=120)  # a bound on a hang, not a timing: it answers within a few socket timeouts
        own_redis.process.send_signal(signal.SIGCONT)
        assert not asking.is_alive(), "the command still waits on a Redis that does not answer"
        second = answered[0]
        assert second is not None
        job = stored(app, second)
        why = f"could not queue {show_job(second)}: the job queue is unavailable; nothing was done"
        assert job.state is JobState.FAILED and job.result == why
        assert any(why in t for t in said(app, chat))
    finally:
        own_redis.process.send_signal(signal.SIGCONT)
        app.close()


# ---- nobody takes it -----------------------------------------------------------------------


@pytest.fixture
def shared_redis() -> Iterator[Redis]:
    connection = Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except Exception as e:
        service_missing("Redis", e)
    yield connection
    connection.close()


def test_a_job_no_worker_takes_from_redis_is_failed_and_reported_after_the_start_timeout(
    storage: Storage, clock: FakeClock, shared_redis: Redis
) -> None:
    provision(storage)
    name = f"pvebot-t-{uuid.uuid4().hex[:8]}"
    queue = RqJobQueue(Redis.from_url(REDIS_URL), name=name)
    app = test_app(storage, hypervisors=hypervisors(), queue=queue)
    try:
        assert app.settings.job_start_timeout == 600
        chat = ChatDriver(app)
        job_id = job_of(chat.ask("vm start db-01", as_=BOB))
        assert job_id is not None and queue.queue.count == 1  # waiting in Redis; no worker serves it
        maintenance = build_maintenance(app)

        clock.advance(seconds=599)
        assert maintenance.sweep() == 0
        assert stored(app, job_id).state is JobState.QUEUED

        clock.advance(seconds=1)
        assert maintenance.sweep() == 1
        job = stored(app, job_id)
        assert job.state is JobState.FAILED
        assert job.result == "never started within 10 min: no worker took it; nothing was done"
        assert any("never started within 10 min" in t for t in said(app, chat))
        assert queue.queue.count == 0  # a worker coming up later does not get it
        assert maintenance.sweep() == 0  # settled once
    finally:
        for key in shared_redis.scan_iter(f"rq:*{name}*"):
            shared_redis.delete(key)
        app.close()


# ---- two processes with embedded queues on one database ----------------------------------------


def test_a_second_processs_start_up_sweep_leaves_the_first_processs_waiting_job_alone(storage: Storage) -> None:
    provision(storage)
    lab = GatedHypervisor(cluster_name="lab")
    first = test_app(storage, hypervisors=hypervisors(lab), queue=EmbeddedQueue(workers=1))
    second: App | None = None
    try:
        chat = ChatDriver(first)
        busy = job_of(chat.ask("vm start db-01", as_=BOB))
        assert busy is not None and lab.busy.wait(timeout=30)  # the one worker is inside that job
        waiting = job_of(chat.ask("vm shutdown web-01", as_=BOB))
        assert waiting is not None and stored(first, waiting).state is JobState.QUEUED
        assert stored(first, waiting).queue_owner == first.queue.owner

        second = test_app(storage, hypervisors=hypervisors(), queue=EmbeddedQueue(workers=1))
        assert second.queue.owner != first.queue.owner
        build_maintenance(second).start().stop()

        assert stored(first, waiting).state is JobState.QUEUED
        lab.gate.set()
        for job_id in (busy, waiting):
            assert wait_until_finished(first, job_id).state is JobState.SUCCEEDED
    finally:
        lab.gate.set()
        first.close()
        if second is not None:
            second.close()


def wait_until_finished(app: App, job_id: str) -> Job:
    done = threading.Event()
    for _ in range(600):  # bounded polling of the database; the assertion is on the state, not on time
        job = stored(app, job_id)
        if job.state.finished:
            return job
        done.wait(0.05)
    return stored(app, job_id)


def test_the_waiting_jobs_of_a_process_that_has_ended_are_failed_at_start_up(storage: Storage) -> None:
    provision(storage)
    app = test_app(storage, hypervisors=hypervisors(), queue=FakeQueue())
    try:
        chat = ChatDriver(app)
        job_id = job_of(chat.ask("vm start db-01", as_=BOB))
        assert job_id is not None
        ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                               text=True, check=True)
        dead_owner = f"embedded:{socket.gethostname()}:{int(ended.stdout)}:0123abcd"
        assert owner_gone(dead_owner)
        with app.deps.uow_factory(Scope.everything()) as uow:
            job = uow.jobs.get(job_id)
            assert job is not None
            job.queue_owner = dead_owner  # as that process recorded it when it queued the job
            uow.commit()

        build_maintenance(app).start().stop()

        job = stored(app, job_id)
        assert job.state is JobState.FAILED
        assert job.result == "never started: the pvebot process holding it stopped; nothing was done"
    finally:
        app.close()


def test_only_an_ended_process_on_this_host_counts_as_gone() -> None:
    here = socket.gethostname()
    assert not owner_gone(f"embedded:{here}:{os.getpid()}:abc")  # this very process
    assert not owner_gone(f"embedded:elsewhere.example:{os.getpid() + 1}:abc")  # cannot tell: the timeout will
    assert not owner_gone("something-else")


# ---- the answer carries the follow-ups, the reply only describes -----------------------------


def test_a_queued_reply_says_nothing_about_starting_its_job(storage: Storage) -> None:
    provision(storage)
    app = test_app(storage, hypervisors=hypervisors(), queue=FakeQueue())
    try:
        answer = ChatDriver(app).ask("vm start db-01", as_=BOB, post=False)
        assert isinstance(answer, Answer)
        [follow] = answer.followups
        assert isinstance(follow, StartJob)
        assert "progress_of" in answer.reply.to_dict() and answer.reply.progress_of is None
        assert stored(app, follow.job_id).state is JobState.QUEUED  # nothing started before the post
    finally:
        app.close()


def test_a_job_posts_nothing_and_starts_nothing_until_its_reply_is_delivered(storage: Storage) -> None:
    provision(storage)
    queue = FakeQueue()
    app = test_app(storage, hypervisors=hypervisors(), queue=queue)
    try:
        chat = ChatDriver(app)
        answer = chat.ask("vm start db-01", as_=BOB, post=False)
        assert queue.enqueued == []
        posted = app.dispatcher.deliver(answer, lambda reply: app.notifier.post(chat.conversation, reply))
        job_id = job_of(answer)
        assert posted is not None and job_id is not None
        assert [j for _, j, _ in queue.enqueued] == [job_id]
        assert stored(app, job_id).message_ref["message_id"] == posted.message_id
        assert stored(app, job_id).queue_owner is None  # a shared queue: any worker may take it
    finally:
        app.close()


def test_the_route_a_job_was_recorded_with_travels_to_its_start_and_a_job_gone_meanwhile_stays_alone(
    storage: Storage, clock: FakeClock
) -> None:
    provision(storage)
    queue = FakeQueue()
    app = test_app(storage, hypervisors=hypervisors(), queue=queue)
    try:
        chat = ChatDriver(app)
        first = chat.ask("vm start db-01", as_=BOB, post=False)
        [follow] = first.followups
        assert isinstance(follow, StartJob) and follow.recorded is not None
        job = stored(app, follow.job_id)
        assert (follow.recorded.conversation, follow.recorded.message_ref) == (job.conversation, job.message_ref)

        # cancelled between its reply and its start: the hand-over's own condition leaves it alone
        with app.deps.uow_factory(Scope.everything()) as uow:
            assert uow.jobs.settle(job.id, expected=(JobState.QUEUED,), to=JobState.CANCELLED, at=clock.now(),
                                   result="cancelled")
            uow.commit()
        app.dispatcher.deliver(first, lambda reply: app.notifier.post(chat.conversation, reply))
        assert queue.enqueued == []
        gone = stored(app, job.id)
        assert gone.state is JobState.CANCELLED and gone.message_ref == {} and gone.queue_owner is None
    finally:
        app.close()


def test_timeout_wording_in_seconds_when_not_whole_minutes(storage: Storage, clock: FakeClock) -> None:
    provision(storage)
    app = test_app(storage, hypervisors=hypervisors(), queue=FakeQueue())
    try:
        job_id = job_of(ChatDriver(app).ask("vm start db-01", as_=BOB))
        assert job_id is not None
        clock.advance(seconds=90)
        assert jobs.reap(app.deps, stale_after=timedelta(seconds=60), start_timeout=timedelta(seconds=90)) == 1
        assert stored(app, job_id).result == "never started within 90 s: no worker took it; nothing was done"
    finally:
        app.close()


# ---- a job's log lines -----------------------------------------------------------------------


class TalkingHypervisor(FakeHypervisor):
    """Logs while a job follows its task, as the Proxmox adapter does when it retries."""

    def task_status(self, task: TaskRef) -> TaskStatus:
        logging.getLogger("pvebot.test.proxmox").warning("following %s", task.upid)
        return super().task_status(task)


def test_a_jobs_log_lines_carry_its_request_job_company_and_user(storage: Storage) -> None:
    # issue 18: JSON lines with the request id, job id, company and user, in a job as in a request;
    # a job runs on a worker, away from the request that asked for it, so it must say whose it is
    provision(storage)
    out = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure(level="INFO", json_format=True, stream=out)
    app = test_app(storage, hypervisors=hypervisors(TalkingHypervisor(cluster_name="lab")))
    try:
        answer = ChatDriver(app).ask("vm start db-01", as_=BOB)
        job_id = job_of(answer)
        assert job_id is not None and wait_until_finished(app, job_id).state is JobState.SUCCEEDED
    finally:
        app.close()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    [following, *_] = [e for e in lines if e["logger"] == "pvebot.test.proxmox"]
    job = stored(app, job_id)
    assert following["job_id"] == show_job(job_id)
    assert following["company"] == str(job.company_id)
    assert following["user"] == BOB
    assert following["request_id"] == job.request_id


# ---- the process stops ---------------------------------------------------------------------------


def test_stopping_a_process_settles_what_its_in_process_queue_still_holds(storage: Storage) -> None:
    # `pvebot serve` or `shell` without Redis runs jobs in its own threads: when it stops, a job cut
    # off mid-way and one never started must not stay RUNNING and QUEUED, with nobody left to say so
    provision(storage)
    lab = GatedHypervisor(cluster_name="lab")
    app = test_app(storage, hypervisors=hypervisors(lab), queue=EmbeddedQueue(workers=1))
    try:
        chat = ChatDriver(app)
        running = job_of(chat.ask("vm start db-01", as_=BOB))
        assert running is not None and lab.busy.wait(timeout=30)  # its task runs; the one worker is busy
        waiting = job_of(chat.ask("vm shutdown web-01", as_=BOB))
        assert waiting is not None and stored(app, waiting).state is JobState.QUEUED

        app.close()

        cut = stored(app, running)
        assert cut.state is JobState.UNKNOWN and cut.result == jobs.STOPPED_MIDWAY
        never = stored(app, waiting)
        assert never.state is JobState.FAILED
        assert never.result == "never started: pvebot was stopped before a worker took it; nothing was done"
        texts = said(app, chat)
        assert any(jobs.STOPPED_MIDWAY in t for t in texts) and any(never.result in t for t in texts), texts
    finally:
        lab.gate.set()
        app.close()
