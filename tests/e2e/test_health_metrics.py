"""``/healthz``, ``/readyz`` and ``/metrics`` of ``pvebot serve``, over HTTP against ``create_app``."""

from __future__ import annotations

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
from adapters.sql import migrate
from adapters.sql.uow import make_engine
from bot.bootstrap import App, build_app, open_storage
from bot.config import Settings
from bot.server import create_app
from core.principal import Scope
from tests.fakes import FakeHypervisors
from tests.relay import Relay
from tests.slack_support import serving
from tests.support import REDIS_URL, STANDARD_DOC, TOKEN_ENV, ChatDriver, mariadb_database, provision, service_missing


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
    assert ("pvebot_queue_depth", ()) in after and ("pvebot_notifications_pending", ()) in after


async def test_a_finished_job_counts_by_state_with_its_duration(embedded_app: App) -> None:
    driver = ChatDriver(embedded_app)
    driver.run("vm shutdown web-01", as_="bob@acme.example")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with embedded_app.deps.uow_factory(Scope.everything()) as uow:
            if all(j.state.value in ("succeeded", "failed") for j in uow.jobs.list()):
                break
        time.sleep(0.02)
    async with _client(embedded_app) as (session, base), session.get(f"{base}/metrics") as answer:
        after = _samples(await answer.text())
    assert after[("pvebot_jobs_finished_total", (("action", "vm.shutdown"), ("state", "succeeded")))] == 1
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
