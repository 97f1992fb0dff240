"""The job queue: RQ on Redis in production, RQ's own worker over in-process Redis when embedded.

Both run the same RQ code path: jobs are enqueued by dotted path with primitive kwargs and
executed by an RQ ``SimpleWorker``. Embedded, the Redis is ``fakeredis`` in this process and
the workers are threads, so a newcomer needs no server.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.timeouts import TimerDeathPenalty

log = logging.getLogger(__name__)


def rq_job_id(job_id: str) -> str:
    return f"pvebot-{job_id}"


def owner_gone(owner: str) -> bool:
    """Whether the process behind an embedded queue's :attr:`EmbeddedQueue.owner` has ended.

    Only a process on this host can be checked; elsewhere (or on an id of another form) the
    answer is False and the start timeout settles its jobs instead. A recycled pid reads as
    alive, which errs the same safe way.
    """
    kind, _, rest = owner.partition(":")
    host, _, rest = rest.partition(":")
    pid, _, _ = rest.partition(":")
    if kind != "embedded" or host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, under another user
        return False
    return False


class RqJobQueue:
    """:class:`core.ports.JobQueue` over an RQ queue."""

    # a Redis queue is shared: whichever worker process is up takes its jobs; the mark says that a
    # job was handed to Redis, so that one Redis lost (restarted empty) can be handed over again
    owner: str | None = "redis"

    def __init__(self, connection: Redis, *, name: str = "pvebot") -> None:
        self.connection = connection
        self.queue = Queue(name, connection=connection)

    def enqueue(self, function: str, *, job_id: str, kwargs: dict[str, Any], timeout: int) -> None:
        self.queue.enqueue(
            function,
            kwargs=kwargs,
            job_id=rq_job_id(job_id),
            job_timeout=timeout,
            result_ttl=24 * 3600,
            failure_ttl=7 * 24 * 3600,
            description=f"{function} {job_id}",
        )

    def cancel(self, job_id: str) -> bool:
        try:
            job = Job.fetch(rq_job_id(job_id), connection=self.connection)
        except NoSuchJobError:
            return False
        if job.get_status() in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            job.cancel()
            return True
        return False

    def holds(self, job_id: str) -> bool:
        try:
            return bool(Job.exists(rq_job_id(job_id), connection=self.connection))
        except Exception:
            return True  # cannot tell: nothing is handed over twice on a guess

    def close(self) -> None:
        self.connection.close()


class ThreadWorker(SimpleWorker):
    """An RQ worker that can live in a thread: no signal handlers, timeouts by timer."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        # signal.signal only works in the main thread; the embedding process handles signals
        pass


class EmbeddedQueue(RqJobQueue):
    """RQ with an in-process Redis and worker threads that wake when a job is enqueued.

    The threads start with :meth:`serve`, given what makes a thread ready to run jobs (the
    owner installs its dependencies there), so a queue never runs a job with nobody's deps.
    """

    def __init__(self, *, name: str = "pvebot", workers: int = 2) -> None:
        import fakeredis

        super().__init__(fakeredis.FakeStrictRedis(server=fakeredis.FakeServer()), name=name)
        # what it holds dies with this process: the id names the process (host and pid) so that
        # another pvebot can tell a dead holder from a live one, and this queue among several
        self.owner = f"embedded:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._workers = workers
        self._threads: list[threading.Thread] = []

    def serve(self, setup: Callable[[], None]) -> None:
        """Start the worker threads; each runs ``setup`` first (e.g. ``jobs.run.install(deps, thread=True)``)."""
        if self._threads:
            raise RuntimeError("this embedded queue is served already")
        self._threads = [
            threading.Thread(target=self._work, args=(setup,), name=f"pvebot-worker-{i}", daemon=True)
            for i in range(self._workers)
        ]
        for thread in self._threads:
            thread.start()

    def enqueue(self, function: str, *, job_id: str, kwargs: dict[str, Any], timeout: int) -> None:
        super().enqueue(function, job_id=job_id, kwargs=kwargs, timeout=timeout)
        self._wake.set()

    def _work(self, setup: Callable[[], None]) -> None:
        setup()
        worker = ThreadWorker([self.queue], connection=self.connection, name=f"embedded-{uuid.uuid4().hex[:8]}")
        while not self._stopped.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                worker.work(burst=True, logging_level="WARNING")
            except Exception:  # a broken job must not end the worker thread
                log.exception("embedded worker error")

    def pending(self) -> int:
        return self.queue.count

    def close(self) -> None:
        self._stopped.set()
        # what no thread has taken yet is not started now: the owner settles it (jobs.settle_held)
        for waiting in self.queue.job_ids:  # (Queue.empty needs Lua, which the in-process Redis lacks)
            self.queue.remove(waiting)
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=5)
        super().close()
