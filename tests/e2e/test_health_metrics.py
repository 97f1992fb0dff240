"""``/healthz``, ``/readyz`` and ``/metrics`` of ``pvebot serve``, over HTTP against ``create_app``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from adapters.crypto import generate_key
from adapters.queue import RqJobQueue, rq_job_id
from adapters.sql import migrate
from adapters.sql.uow import make_engine
from bot.bootstrap import App, build_app, open_storage
from bot.config import Settings
from bot.server import create_app
from core.model import OutboxState, Topic
from core.principal import Scope
from core.services import notifications, outbox
from core.services.notifications import Event, Item
from tests.e2e.shell_world import world
from tests.fakes import FakeHypervisors
from tests.relay import Relay
from tests.slack_support import serving
from tests.support import (
    REDIS_URL,
    STANDARD_DOC,
    TOKEN_ENV,
    ChatDriver,
    job_of,
    mariadb_database,
    provision,
    service_missing,
)
from tests.teams_support import card_text, message, running_bot


def _via(proxy: Relay, url: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username + '@' if parts.username else ''}127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@asynccontextmanager
async def _client(app: App) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with serving(create_app(app)) as base, aiohttp.ClientSession() as session:
        yield session, base


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def embedded_app(tmp_path: Path) -> Iterator[App]:
    settings = Settings.from_mapping({"PVEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pvebot.db'}",
                                      "PVEBOT_SECRET_KEY": generate_key(), **TOKEN_ENV})
    storage = open_storage(settings)
    provision(storage, STANDARD_DOC, TOKEN_ENV)
    hypervisors = FakeHypervisors()
    hypervisors.cluster("lab").add(100, "web-01", pool="acme")
    app = build_app(settings, storage=storage, hypervisors=hypervisors)
    yield app
    app.close()
    storage.engine.dispose()


async def test_metrics_parse_and_their_counters_move_when_commands_run(embedded_app: App) -> None:
    async with _client(embedded_app) as (session, base):
        async with session.get(f"{base}/healthz") as answer:
            assert answer.status == 200
        async with session.get(f"{base}/metrics") as answer:
            assert answer.status == 200 and answer.content_type == "text/plain"
            before = _samples(await answer.text())
        driver = ChatDriver(embedded_app)
        driver.run("whoami", as_="bob@acme.example")
        driver.run("vm list", as_="bob@acme.example")
        driver.run("vm frobnicate 100", as_="bob@acme.example")
        async with session.get(f"{base}/metrics") as answer:
            after = _samples(await answer.text())
    ok = ("pvebot_commands_total", (("command", "vm list"), ("outcome", "ok")))
    assert before.get(ok, 0) == 0 and after[ok] == 1
    assert after[("pvebot_commands_total", (("command", "whoami"), ("outcome", "ok")))] == 1
    assert after[("pvebot_commands_total", (("command", "(invalid)"), ("outcome", "error")))] == 1
    assert after[("pvebot_command_ack_seconds_count", ())] == before.get(("pvebot_command_ack_seconds_count", ()),
                                                                         0) + 3
    assert after[("pvebot_chat_posts_total", (("outcome", "ok"), ("platform", "shell")))] >= 3
    assert after[("pvebot_jobs", (("state", "running"),))] == 0
    assert after[("pvebot_queue_depth", ())] == 0  # the embedded queue's threads took every job
    assert {k for (name, k) in after if name == "pvebot_notifications_pending"} == {
        (("kind", "approval_card"),), (("kind", "event"),)}


async def test_a_finished_job_counts_by_state_with_its_duration(embedded_app: App) -> None:
    driver = ChatDriver(embedded_app)
    driver.run("vm shutdown web-01", as_="bob@acme.example")
    finished = ("pvebot_jobs_finished_total", (("action", "vm.shutdown"), ("state", "succeeded")))
    # counted once the job's last message is out, a moment after its state settles: ask until it is
    deadline = time.monotonic() + 20
    async with _client(embedded_app) as (session, base):
        while True:
            async with session.get(f"{base}/metrics") as answer:
                after = _samples(await answer.text())
            if finished in after or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    assert after[finished] == 1, sorted(k for k in after if k[0].startswith("pvebot_job"))
    assert after[("pvebot_job_duration_seconds_count", (("action", "vm.shutdown"),))] == 1
    assert after[("pvebot_jobs", (("state", "succeeded"),))] == 1


@pytest.mark.mariadb
@pytest.mark.redis
async def test_readyz_flips_to_503_when_redis_or_the_database_goes_away_and_back(tmp_path: Path) -> None:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as e:
        service_missing("Redis", e)
    with mariadb_database() as db_url:
        db_target, redis_target = urlsplit(db_url), urlsplit(REDIS_URL)
        db_proxy = Relay((db_target.hostname or "127.0.0.1", db_target.port or 3306))
        redis_proxy = Relay((redis_target.hostname or "127.0.0.1", redis_target.port or 6379))
        settings = Settings.from_mapping({
            "PVEBOT_DATABASE_URL": _via(db_proxy, db_url), "PVEBOT_REDIS_URL": _via(redis_proxy, REDIS_URL),
            "PVEBOT_QUEUE": f"pvebot-test-{uuid.uuid4().hex[:8]}", "PVEBOT_SECRET_KEY": generate_key(),
        })
        engine = make_engine(settings.database_url)
        migrate.upgrade(engine)
        engine.dispose()
        app = build_app(settings, hypervisors=FakeHypervisors())
        try:
            async with _client(app) as (session, base):
                async def ready() -> tuple[int, dict[str, str]]:
                    async with session.get(f"{base}/readyz") as answer:
                        return answer.status, (await answer.json())["checks"]

                assert await ready() == (200, {"database": "ok", "redis": "ok"})
                redis_proxy.cut()
                status, checks = await ready()
                assert status == 503 and checks["database"] == "ok" and checks["redis"].startswith("unavailable")
                redis_proxy.restore()
                assert await ready() == (200, {"database": "ok", "redis": "ok"})
                db_proxy.cut()
                status, checks = await ready()
                assert status == 503 and checks["database"].startswith("unavailable") and checks["redis"] == "ok"
                assert "@" not in str(checks) and "root" not in str(checks)  # no URL, no user
                db_proxy.restore()
                assert await ready() == (200, {"database": "ok", "redis": "ok"})
                async with session.get(f"{base}/healthz") as answer:
                    assert answer.status == 200  # alive all along: only readiness moved
        finally:
            app.close()
            app.storage.engine.dispose()
            db_proxy.close()
            redis_proxy.close()


async def _scrape(app: App) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with _client(app) as (session, base), session.get(f"{base}/metrics") as answer:
        assert answer.status == 200
        return _samples(await answer.text())


def _pending(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {dict(labels)["kind"]: value for (name, labels), value in samples.items()
            if name == "pvebot_notifications_pending"}


# acme's approvers channel is a Teams channel the bot has never been written to: cards for it wait
_WAITING_APPROVERS = "    approval: {approvers_channel: \"teams:19:approvers@thread.tacv2\"}\n"
_QUOTAS = "    quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}\n"


def _backup_run(key: str, acme: int) -> Event:
    return Event(topic=Topic.BACKUPS, key=key, title="Backup run on lab/pve1",
                 items=(Item("lab", 100, "web-01", acme, True, "failed", "no space left on device"),))


async def test_notifications_pending_tells_approval_cards_and_outbox_events_apart(tmp_path: Path) -> None:
    settings = Settings.from_mapping({"PVEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pvebot.db'}",
                                      "PVEBOT_SECRET_KEY": generate_key(), **TOKEN_ENV})
    storage = open_storage(settings)
    assert _QUOTAS in STANDARD_DOC
    provision(storage, STANDARD_DOC.replace(_QUOTAS, _QUOTAS + _WAITING_APPROVERS, 1), TOKEN_ENV)
    hypervisors = FakeHypervisors()
    hypervisors.cluster("lab").add(100, "web-01", pool="acme")
    hypervisors.cluster("lab").add(101, "db-02", pool="acme", status="stopped")
    app = build_app(settings, storage=storage, hypervisors=hypervisors)
    try:
        assert _pending(await _scrape(app)) == {"approval_card": 0, "event": 0}
        driver = ChatDriver(app)
        asked = driver.run("vm delete db-02 --reason replaced", as_="bob@acme.example").plain_text()
        assert "cannot be reached yet" in asked
        said = driver.run("notify subscribe backups", as_="alice@acme.example").plain_text()
        assert "now hears about backups" in said
        with app.deps.uow_factory(Scope.everything()) as uow:
            company = uow.companies.by_slug("acme")
            assert company is not None and company.id is not None
            acme = company.id
        for n in range(3):
            assert notifications.publish(app.deps, _backup_run(f"vzdump:lab:pve1:UPID:{n}", acme)) == 1
        assert _pending(await _scrape(app)) == {"approval_card": 1, "event": 3}

        # a row the sender gave up on is no longer pending; nor are the rows it sent
        with app.deps.uow_factory(Scope.everything()) as uow:
            first = uow.outbox.due(now=app.deps.clock.now())[0]
            assert first.id is not None
            uow.outbox.settle([first.id], to=OutboxState.DROPPED, at=app.deps.clock.now())
            uow.commit()
        assert _pending(await _scrape(app))["event"] == 2
        assert outbox.deliver_due(app.deps).rows == 2  # one digest into the shell channel
        assert _pending(await _scrape(app)) == {"approval_card": 1, "event": 0}
    finally:
        app.close()
        storage.engine.dispose()


def _rq_job_key(job_id: str) -> str:
    return f"rq:job:{rq_job_id(job_id)}"


@pytest.mark.redis
async def test_queue_depth_counts_the_jobs_waiting_in_redis_and_falls_as_they_are_cancelled(tmp_path: Path) -> None:
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.RedisError as e:
        service_missing("Redis", e)
    name = f"pvebot-test-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_mapping({"PVEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pvebot.db'}",
                                      "PVEBOT_SECRET_KEY": generate_key(), **TOKEN_ENV})
    storage = open_storage(settings)
    provision(storage, STANDARD_DOC, TOKEN_ENV)
    hypervisors = FakeHypervisors()
    lab = hypervisors.cluster("lab")
    lab.add(100, "web-01", pool="acme")
    lab.add(101, "db-01", pool="acme", status="stopped")
    lab.add(102, "app-01", pool="acme", status="stopped")
    # no worker serves this queue: what the dispatcher hands over stays in Redis
    queue = RqJobQueue(redis.Redis.from_url(REDIS_URL), name=name)
    app = build_app(settings, storage=storage, hypervisors=hypervisors, queue=queue)
    jobs: list[str | None] = []
    try:
        assert (await _scrape(app))[("pvebot_queue_depth", ())] == 0
        driver = ChatDriver(app)
        jobs += [job_of(driver.ask(line, as_="bob@acme.example"))
                for line in ("vm start db-01", "vm start app-01", "vm shutdown web-01")]
        assert all(jobs) and queue.queue.count == 3
        assert (await _scrape(app))[("pvebot_queue_depth", ())] == 3
        assert "cancelled" in driver.run(f"job cancel job-{jobs[0]}", as_="bob@acme.example").plain_text()
        assert (await _scrape(app))[("pvebot_queue_depth", ())] == 2
        for job in jobs[1:]:
            driver.run(f"job cancel job-{job}", as_="bob@acme.example")
        after = await _scrape(app)
        assert after[("pvebot_queue_depth", ())] == 0
        assert after[("pvebot_jobs", (("state", "cancelled"),))] == 3
    finally:
        app.close()
        storage.engine.dispose()
        # the queue's own keys, and the job hashes, which are named by job id, not by queue
        for key in [*connection.scan_iter(f"rq:*{name}*"), *(_rq_job_key(j) for j in jobs if j)]:
            connection.delete(key)
        connection.close()


def _calls(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], **labels: str) -> float:
    return samples.get(("pvebot_proxmox_calls_total", tuple(sorted(labels.items()))), 0)


def _call_latencies(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return samples.get(("pvebot_proxmox_call_seconds_count", (("cluster", "lab"),)), 0)


async def test_proxmox_calls_to_the_simulator_show_in_the_latency_histogram_by_outcome(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        before, sent = await _scrape(w.app), len(w.sim.requests)
        w.sim.faults.http_500(count=1)  # the next call answers 500, whichever it is
        session, out = w.shell("bob@acme.example")
        session.run(["vm list"])
        assert "web-01" not in out.getvalue()  # the listing failed
        failed = len(w.sim.requests) - sent
        session.run(["vm list", "vm show web-01"])
        assert "web-01" in out.getvalue()
        after = await _scrape(w.app)
    calls = len(w.sim.requests) - sent
    assert failed == 1 and calls > failed
    # every HTTP request the simulator saw is one observation of the cluster's latency histogram
    assert _call_latencies(after) - _call_latencies(before) == calls
    assert _calls(after, cluster="lab", outcome="http_500") - _calls(before, cluster="lab", outcome="http_500") == 1
    assert _calls(after, cluster="lab", outcome="ok") - _calls(before, cluster="lab", outcome="ok") == calls - 1


async def test_teams_429s_are_counted_though_the_notifier_waits_them_out(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_bot(tmp_path, monkeypatch) as bot:
        before = await _scrape(bot.app)
        bot.fake.throttle_edits = 2  # the connector answers the next two edits 429 with Retry-After
        status, _ = await bot.post(message(bot.fake, "vm start db-01"))
        assert status == 200
        bot.fake.wait_for(lambda: [c for c in bot.fake.activities("PUT") if "done" in card_text(c.body)],
                          what="the final edit, despite the throttling")
        after = await _scrape(bot.app)
    throttled = ("pvebot_chat_rate_limited_total", (("platform", "teams"),))
    assert bot.fake.throttle_edits == 0
    assert after.get(throttled, 0) - before.get(throttled, 0) == 2
    # both were waited out: no post or edit ended rate-limited
    assert after.get(("pvebot_chat_posts_total", (("outcome", "rate_limited"), ("platform", "teams"))), 0) == 0
