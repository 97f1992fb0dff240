"""What observing costs: the dispatcher with and without its metrics and log-context middleware, and
one ``/metrics`` scrape (its gauges count jobs in the database) with many jobs stored.

1. N ``whoami`` commands through the plain :class:`Dispatcher` and through the
   :class:`ObservedDispatcher` ``pvebot serve`` runs: microseconds per command, and the difference.
2. ``PrometheusTelemetry.render`` with J job rows in SQLite: milliseconds per scrape.

No network; SQLite in a temporary directory. Usage: python bench/observability.py [N] [J]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import _path  # noqa: F401  (the repository first on sys.path)

from adapters.crypto import generate_key
from bot.bootstrap import build_app, open_storage
from bot.config import Settings
from bot.dispatch import Dispatcher, RateLimiter
from core.chat import CommandRequest, ConversationRef, IdentityKey
from core.model import Job, JobState
from core.principal import Scope
from tests.fakes import FakeHypervisors
from tests.support import STANDARD_DOC, TOKEN_ENV, provision


def per_command(dispatcher: Dispatcher, n: int) -> list[float]:
    conversation = ConversationRef(platform="shell", channel="bench")
    times = []
    for _ in range(n):
        request = CommandRequest(identity=IdentityKey("slack", "T0ACME", "U0BOB"), text="whoami",
                                 conversation=conversation, request_id=uuid.uuid4().hex)
        start = time.perf_counter()
        dispatcher.handle(request)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    tmp = Path(tempfile.mkdtemp(prefix="pvebot-bench-"))
    settings = Settings.from_mapping({"PVEBOT_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
                                      "PVEBOT_SECRET_KEY": generate_key(), **TOKEN_ENV})
    storage = open_storage(settings)
    provision(storage, STANDARD_DOC, TOKEN_ENV)
    app = build_app(settings, storage=storage, hypervisors=FakeHypervisors())
    limiter = RateLimiter(limit=10**9, window=1.0)
    plain = Dispatcher(registry=app.dispatcher.registry, deps=app.deps, directory=app.directory,
                       rate_limiter=limiter)
    app.dispatcher.rate_limiter = limiter
    per_command(plain, 50)  # warm up both paths
    per_command(app.dispatcher, 50)
    bare, observed = per_command(plain, n), per_command(app.dispatcher, n)
    b, o = statistics.median(bare) * 1e6, statistics.median(observed) * 1e6
    print(f"dispatcher, {n} whoami each: plain p50 {b:.0f} µs, observed p50 {o:.0f} µs, "
          f"overhead {o - b:+.0f} µs ({(o / b - 1) * 100:+.1f}%)")

    now = datetime.now(UTC)
    states = list(JobState)
    with storage.uow_factory(Scope.everything()) as uow:
        for i in range(jobs):
            uow.jobs.add(Job(id=f"b{i:09d}", request_id=f"bench-{i}", company_id=1, actor_user_id=1,
                             action="vm.start", target={}, params={}, state=states[i % len(states)],
                             created_at=now, conversation={}, summary="bench"))
        uow.commit()
    app.telemetry.render()
    scrapes = []
    for _ in range(20):
        start = time.perf_counter()
        body = app.telemetry.render()
        scrapes.append(time.perf_counter() - start)
    print(f"/metrics with {jobs} jobs stored: p50 {statistics.median(scrapes) * 1e3:.1f} ms per scrape, "
          f"{len(body)} bytes")
    app.close()


if __name__ == "__main__":
    main()
