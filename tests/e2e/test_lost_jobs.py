"""A Redis restarted empty (it keeps nothing on disk in many deployments) loses no job: the database is
the source of truth, and the maintenance sweep hands a job Redis no longer has over again, once."""

from __future__ import annotations

import uuid

from redis import Redis
from rq import SimpleWorker

from adapters.queue import RqJobQueue
from bot.bootstrap import Storage, build_maintenance
from core.model import JobState
from core.principal import Scope
from jobs import run
from tests.e2e.test_dispatch import BOB, OwnRedis, hypervisors, own_redis, stored
from tests.fakes import FakeClock
from tests.support import ChatDriver, job_of, provision, test_app

__all__ = ["own_redis"]  # the fixture, used by name below


def test_a_job_lost_by_an_emptied_redis_is_handed_over_again_and_runs_once(
    storage: Storage, clock: FakeClock, own_redis: OwnRedis
) -> None:
    provision(storage)
    connection = Redis.from_url(own_redis.url)
    queue = RqJobQueue(connection, name=f"pvebot-t-{uuid.uuid4().hex[:8]}")
    hv = hypervisors()
    app = test_app(storage, hypervisors=hv, queue=queue)
    try:
        job_id = job_of(ChatDriver(app).ask("vm start db-01", as_=BOB))
        assert job_id is not None and queue.holds(job_id)
        connection.flushall()  # what a restart without persistence leaves
        assert not queue.holds(job_id)
        maintenance = build_maintenance(app)

        clock.advance(seconds=10)
        assert maintenance.sweep() == 0 and not queue.holds(job_id)  # a job just queued is given time

        clock.advance(seconds=25)
        maintenance.sweep()
        assert queue.holds(job_id) and queue.queue.count == 1
        maintenance.sweep()
        assert queue.queue.count == 1  # handed over once, not once per sweep
        with app.deps.uow_factory(Scope.everything()) as uow:
            assert [e.action for e in uow.audit.query(limit=50) if e.action == "job.requeued"] == ["job.requeued"]

        run.install(app.deps)
        try:
            SimpleWorker([queue.queue], connection=connection).work(burst=True)
        finally:
            run.uninstall()
        assert stored(app, job_id).state is JobState.SUCCEEDED
        assert [c for c in hv.cluster("lab").calls if c[0] == "qmstart"] == [("qmstart", 102)]
    finally:
        app.close()


def test_approving_while_redis_is_down_tells_the_approver_and_leaves_nothing_queued(
    storage: Storage, own_redis: OwnRedis
) -> None:
    from core.model import ApprovalState

    provision(storage)
    queue = RqJobQueue(Redis.from_url(own_redis.url), name=f"pvebot-t-{uuid.uuid4().hex[:8]}")
    app = test_app(storage, hypervisors=hypervisors(), queue=queue)
    try:
        chat = ChatDriver(app)
        card = chat.ask("vm stop web-01 --reason maintenance", as_=BOB)
        approval_id = next(f.approval_id for f in card.followups if hasattr(f, "approval_id"))
        own_redis.stop()
        answer = chat.ask(f"approve apr-{approval_id}", as_="alice@acme.example")
        assert "the job queue is unavailable; nothing was done" in answer.reply.text, answer.reply.text
        with app.deps.uow_factory(Scope.everything()) as uow:
            approval = uow.approvals.get(approval_id)
            assert approval is not None and approval.state is ApprovalState.FAILED
            assert approval.job_id is not None
            job = uow.jobs.get(approval.job_id)
        assert job is not None and job.state is JobState.FAILED  # never left QUEUED
        again = chat.ask(f"approve apr-{approval_id}", as_="alice@acme.example")
        assert "failed" in again.reply.text  # the truth, not "already approved" and silence
    finally:
        app.close()
