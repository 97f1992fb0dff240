"""The notification outbox under a 429 storm: 1,000 events to 50 channels, Slack refusing a tenth of the posts.

Virtual time (a fake clock moved 0.1 s a step), an in-memory SQLite outbox, the real sender
(:func:`core.services.outbox.deliver_due`) and a fake Slack that answers 429 (Retry-After 1 s) to one
post in ten. Events arrive at 10 a second over 100 s, each for one of 50 provider channels. Checks:
every event delivered, none twice, never two posts in one channel within a second. Prints p50 / p99
of event-to-delivery time (virtual seconds) and the wall time of the whole run.

    .venv/bin/python bench/notify.py [--events 1000] [--channels 50] [--refuse 0.1]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import _path  # noqa: F401  (the repository first on sys.path)
from sqlalchemy.pool import StaticPool

from adapters.sql.tables import metadata
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from core.chat import ConversationRef, MessageRef, Reply
from core.errors import Throttled
from core.model import OutboxState, Subscription, Topic
from core.principal import Scope
from core.services import notifications, outbox
from core.services.deps import Deps


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> datetime:
        return datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class StormySlack:
    def __init__(self, clock: Clock, refuse: float, seed: int = 7) -> None:
        self.clock, self.refuse, self.rng = clock, refuse, random.Random(seed)
        self.posts: dict[str, list[float]] = defaultdict(list)
        self.refused = 0

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        if self.rng.random() < self.refuse:
            self.refused += 1
            raise Throttled(retry_after=1.0)
        self.posts[conversation.channel].append(self.clock.t)
        return MessageRef(conversation=conversation, message_id=str(self.clock.t))

    def update(self, message: MessageRef, reply: Reply) -> None: ...


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--refuse", type=float, default=0.1)
    args = parser.parse_args()
    engine = make_engine("sqlite://", poolclass=StaticPool)
    metadata.create_all(engine)
    clock = Clock()
    slack = StormySlack(clock, args.refuse)
    uow_factory = SqlUnitOfWorkFactory(engine)
    deps = Deps(uow_factory=uow_factory, hypervisors=None, queue=None, notifier=slack,  # type: ignore[arg-type]
                clock=clock)
    with uow_factory(Scope.everything()) as uow:
        for c in range(args.channels):
            uow.subscriptions.add(Subscription(company_id=None, topic=Topic.JOBS, channel=f"slack:C{c:03d}",
                                               created_by=None, created_at=clock.now(), vm=f"vm{c}"))
        uow.commit()
    policy = outbox.Policy()
    started = time.perf_counter()
    published = 0
    step = 0.1
    while True:
        while published < args.events and published * 0.1 <= clock.t:
            c = published % args.channels
            notifications.publish(deps, notifications.Event(topic=Topic.JOBS, key=f"e{published}",
                                                            title=f"event {published}", vm=f"vm{c}"))
            published += 1
        outbox.deliver_due(deps, policy=policy)
        with uow_factory(Scope.everything()) as uow:
            left = uow.outbox.due(now=clock.now() + timedelta(days=1), limit=1)
        if published == args.events and not left:
            break
        clock.t += step
    wall = time.perf_counter() - started
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT state, created_at, sent_at FROM notify_outbox").fetchall()
    sent = [r for r in rows if r[0] == OutboxState.SENT.value]
    assert len(rows) == args.events and len(sent) == args.events, (len(rows), len(sent))

    def seconds(value: object) -> float:
        return datetime.fromisoformat(str(value)).timestamp()

    latency = sorted(seconds(r[2]) - seconds(r[1]) for r in sent)
    gaps = [b - a for times in slack.posts.values() for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 1.0 - 1e-9, min(gaps)
    posts = sum(len(t) for t in slack.posts.values())
    p99 = latency[int(len(latency) * 0.99) - 1]
    print(f"{args.events} events to {args.channels} channels, {slack.refused} posts refused with 429: "
          f"all {len(sent)} delivered once in {posts} posts (digests), smallest gap in a channel {min(gaps):.1f} s")
    print(f"event to delivery (virtual s): p50 {statistics.median(latency):.2f}, p99 {p99:.2f}, "
          f"max {latency[-1]:.2f}; wall {wall:.1f} s")


if __name__ == "__main__":
    main()
