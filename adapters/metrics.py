"""Prometheus metrics: :class:`core.telemetry.Telemetry` over ``prometheus-client``, and the gauges
read at scrape time (jobs by state, queue depth, messages pvebot still has to post).

Each process builds its own :class:`PrometheusTelemetry` with its own registry rather than using
the library's global one, so that tests and embedded processes do not share counters. Gauges
that describe shared state (the database, the queue) are read when Prometheus scrapes, not kept
in step by every writer: any serve or worker process then tells the same truth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select

from adapters.sql import tables
from core.model import ApprovalState, JobState, OutboxState
from core.principal import Scope
from core.services import channels

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0)
JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
CALL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PrometheusTelemetry:
    """:class:`core.telemetry.Telemetry` counting into one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.commands = Counter("pvebot_commands", "Chat commands answered", ["command", "outcome"], registry=r)
        self.ack = Histogram("pvebot_command_ack_seconds", "Time from a chat request to its answer",
                             buckets=ACK_BUCKETS, registry=r)
        self.jobs = Counter("pvebot_jobs_finished", "Jobs that reached a final state", ["action", "state"],
                            registry=r)
        self.job_seconds = Histogram("pvebot_job_duration_seconds", "Running time of finished jobs", ["action"],
                                     buckets=JOB_BUCKETS, registry=r)
        self.calls = Counter("pvebot_proxmox_calls", "Proxmox API calls", ["cluster", "outcome"], registry=r)
        self.call_seconds = Histogram("pvebot_proxmox_call_seconds", "Proxmox API call latency", ["cluster"],
                                      buckets=CALL_BUCKETS, registry=r)
        self.posts = Counter("pvebot_chat_posts", "Posts and edits towards chat platforms", ["platform", "outcome"],
                             registry=r)
        # counted where the 429 is answered: the notifiers wait most of them out, so a post that
        # finally went through still shows that the platform throttled it on the way
        self.rate_limited = Counter("pvebot_chat_rate_limited", "HTTP 429 answers from chat platforms, retried or not",
                                    ["platform"], registry=r)

    def command_handled(self, *, command: str, outcome: str, seconds: float) -> None:
        self.commands.labels(command=command, outcome=outcome).inc()
        self.ack.observe(seconds)

    def job_finished(self, *, action: str, state: str, seconds: float) -> None:
        self.jobs.labels(action=action, state=state).inc()
        self.job_seconds.labels(action=action).observe(seconds)

    def proxmox_call(self, *, cluster: str, outcome: str, seconds: float) -> None:
        self.calls.labels(cluster=cluster, outcome=outcome).inc()
        self.call_seconds.labels(cluster=cluster).observe(seconds)

    def chat_post(self, *, platform: str, outcome: str) -> None:
        self.posts.labels(platform=platform, outcome=outcome).inc()

    def chat_rate_limited(self, *, platform: str) -> None:
        self.rate_limited.labels(platform=platform).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class StateCollector(Collector):
    """Gauges read from the database and the queue when Prometheus scrapes."""

    def __init__(self, *, engine: Engine, uow_factory: Callable[[Scope], Any], queue_depth: Callable[[], int]):
        self._engine = engine
        self._uow_factory = uow_factory
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("pvebot_jobs", "Jobs by state", labels=["state"])
        try:
            with self._engine.connect() as connection:
                counts = dict(connection.execute(
                    select(tables.jobs.c.state, func.count()).group_by(tables.jobs.c.state)
                ).all())
            for state in JobState:
                jobs.add_metric([state.value], float(counts.get(state, counts.get(state.name, 0))))
            yield jobs
        except Exception:
            log.warning("metrics: cannot count jobs", exc_info=True)
        try:
            yield GaugeMetricFamily("pvebot_queue_depth", "Jobs waiting in the queue", value=self._queue_depth())
        except Exception:
            log.warning("metrics: cannot read the queue depth", exc_info=True)
        # one family, a series per kind: sum() is everything still to post, "by (kind)" tells where it waits
        pending = GaugeMetricFamily("pvebot_notifications_pending",
                                    "Messages pvebot still has to post: approval cards waiting for an approvers "
                                    "channel it cannot reach yet (approval_card), event notifications in the "
                                    "outbox not yet sent nor given up (event)", labels=["kind"])
        for kind, count in (("approval_card", self._pending_deliveries), ("event", self._outbox_pending)):
            try:
                pending.add_metric([kind], float(count()))
            except Exception:
                log.warning("metrics: cannot count pending %s notifications", kind, exc_info=True)
        yield pending

    def _pending_deliveries(self) -> int:
        with self._uow_factory(Scope.everything()) as uow:
            waiting = {company.id for company, _ in channels.waiting(uow)}
            if not waiting:
                return 0
            pending = uow.approvals.list(states=[ApprovalState.PENDING], limit=10000)
            return sum(1 for a in pending if a.company_id in waiting and not a.copies)

    def _outbox_pending(self) -> int:
        # PENDING covers rows waiting for their turn, held by a sender and backing off after a 429 or 5xx;
        # SENT and DROPPED (given up) are done. One COUNT over the state index, however long the outbox is.
        c = tables.notify_outbox.c
        with self._engine.connect() as connection:
            return int(connection.execute(
                select(func.count()).select_from(tables.notify_outbox).where(c.state == OutboxState.PENDING)
            ).scalar_one())


def serve_metrics(telemetry: PrometheusTelemetry, *, host: str, port: int) -> None:
    """Serve ``/metrics`` from a daemon thread (``pvebot worker --metrics-port``)."""
    start_http_server(port, addr=host, registry=telemetry.registry)
