"""Backup events end to end: the simulator's backup run, its webhook, ``pvebot serve``, Slack and Teams.

Everything talks HTTP on loopback: the simulator (HTTPS) runs the vzdump tasks and, once its
webhook target and matcher are installed by ``pvebot admin events install`` (a real CLI process),
posts each run's notification to the bot's ``/pve/events/lab``; the bot pulls the node, splits the
run per company, and sends through the fake Slack Web API and the fake Bot Framework connector. The
poller (``PVEBOT_EVENTS_POLL_SECONDS``) is set long where a test shows the push alone, and short where
it shows the pull.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bot.bootstrap import App, build_app, build_maintenance, build_server
from bot.maintenance import Maintenance
from core.model import Topic
from core.principal import Scope
from core.services import notifications
from pvesim import PveSimulator, SimServer
from tests.proxmox_support import TOKEN_ID, TOKEN_SECRET, build_simulator
from tests.slack_support import FakeSlack, all_text, slack_env
from tests.support import STANDARD_DOC, make_storage, principal, provision
from tests.teams_support import FakeBotFramework, card_text, cards_of, message, teams_settings

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
ACME_TEAMS = "19:acme-ops@thread.tacv2"
ACME_NAMES = ("web-01", "db-01", "ct-01")
GLOBEX_NAMES = ("app-02", "ct-02")
PATIENCE = 30.0  # bounds a wait for something that should happen; never a measured time


def _doc(server: SimServer) -> str:
    cluster = ("    api_urls: [https://127.0.0.1:8006]\n    token_id: \"pvebot@pve!bot\"\n"
               "    token_secret_env: PVE_LAB_TOKEN\n    tls: {verify: false}\n")
    assert STANDARD_DOC.count(cluster) == 1
    return STANDARD_DOC.replace(cluster, f'    api_urls: ["{server.url}"]\n    token_id: "{TOKEN_ID}"\n'
                                         f'    token_secret_env: PVE_LAB_TOKEN\n'
                                         f'    tls: {{fingerprint: "{server.fingerprint}"}}\n')


@dataclass
class Bot:
    app: App
    sim: PveSimulator
    slack: FakeSlack
    teams: FakeBotFramework
    url: str
    env: dict[str, str]
    maintenance: Maintenance

    async def cli(self, *args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", *args, cwd=ROOT, env={**os.environ, **self.env, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
        return process.returncode or 0, out.decode()

    async def push(self, *, token: str | None, cluster: str = "lab", node: str = "pve1", kind: str = "vzdump") -> int:
        headers = {"Content-Type": "application/json", **({"X-Pvebot-Token": token} if token is not None else {})}
        async with aiohttp.ClientSession() as session, session.post(
                f"{self.url}/pve/events/{cluster}?node={node}", data=b'{"fields":{"type":"%s"}}' % kind.encode(),
                headers=headers) as response:
            return response.status

    def slack_texts(self, channel: str) -> list[str]:
        return [all_text(c.args) + str(c.args.get("text", "")) for c in self.slack.of("chat.postMessage")
                if c.args.get("channel") == channel]

    def teams_cards(self) -> list[str]:
        path = f"/amer/v3/conversations/{ACME_TEAMS}/activities"
        return [card_text(card) for c in self.teams.activities("POST") if c.path == path for card in cards_of(c.body)]

    def seen(self) -> int:
        from sqlalchemy import func, select

        from adapters.sql import tables as t

        with self.app.storage.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(t.event_seen)) or 0)

    def outbox_rows(self) -> int:
        from sqlalchemy import func, select

        from adapters.sql import tables as t

        with self.app.storage.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(t.notify_outbox)) or 0)

    def secret(self) -> str:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            cluster = uow.clusters.by_name("lab")
            assert cluster is not None and cluster.id is not None
            source = uow.event_sources.get(cluster.id)
        assert source is not None and source.secret_encrypted
        return self.app.storage.cipher.decrypt(source.secret_encrypted)

    def run_backups(self) -> list[str]:
        self.sim.backup_outcome(101, ("error", "no space left on device"))
        return self.sim.run_backup_job("nightly")


async def until(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + PATIENCE
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, poll_seconds: int) -> AsyncIterator[Bot]:
    sim = build_simulator(task_seconds=0.05)
    server = sim.start()
    sim.add_guest(vmid=300, name="orphan-01", node="pve2", status="running")  # in no pool pvebot binds
    with sim.state.lock:
        sim.state.backup_jobs["nightly"] = {"id": "nightly", "schedule": "21:00", "all": "1", "storage": "local"}
    teams = FakeBotFramework(tmp_path).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(teams.cert))
    with FakeSlack() as slack:
        storage = make_storage(f"sqlite:///{tmp_path / 'pvebot.db'}")
        provision(storage, _doc(server), {"PVE_LAB_TOKEN": TOKEN_SECRET})
        extra = {**slack_env(slack), "PVEBOT_EVENTS_POLL_SECONDS": str(poll_seconds), "PVE_LAB_TOKEN": TOKEN_SECRET}
        settings = teams_settings(storage, teams, **extra)
        app = build_app(settings, storage=storage, progress_interval=0.0, poll_interval=0.01)
        web = TestServer(build_server(app), host="127.0.0.1")
        await web.start_server()
        maintenance = build_maintenance(app)
        maintenance.send_interval = 0.1
        maintenance.start()
        env = {k: v for k, v in settings.env.items() if k.startswith(("PVEBOT_", "PVE_"))}
        bot = Bot(app=app, sim=sim, slack=slack, teams=teams, url=str(web.make_url("")).rstrip("/"), env=env,
                  maintenance=maintenance)
        try:
            await _subscribe(bot)
            yield bot
        finally:
            maintenance.stop()
            await web.close()
            app.close()
            teams.stop()
            sim.stop()
            storage.engine.dispose()


async def _subscribe(bot: Bot) -> None:
    """acme in a Teams channel (typed there, which also gives the bot its reference), globex and the provider
    in Slack channels."""
    activity = message(bot.teams, "<at>pvebot</at> notify subscribe backups", user="aad-alice",
                       conversation=f"{ACME_TEAMS};messageid=1700000000001", conversation_type="channel")
    token = bot.teams.issue(service_url=activity["serviceUrl"])
    async with aiohttp.ClientSession() as session, session.post(
            f"{bot.url}/api/messages", json=activity, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200
    await until("acme's Teams subscription", lambda: [
        s for s in _subscriptions(bot) if s.channel == f"teams:{ACME_TEAMS}"])
    deps = bot.app.deps
    notifications.subscribe(deps, principal(bot.app.storage, "carol@globex.example"), topic=Topic.BACKUPS,
                            channel="slack:C0GLOBEX")
    notifications.subscribe(deps, principal(bot.app.storage, "root@host.example"), topic=Topic.BACKUPS,
                            channel="slack:C0HOSTOPS", everyone=True)


def _subscriptions(bot: Bot) -> list[Any]:
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        return uow.subscriptions.list()


def _provider_sent(bot: Bot) -> list[str]:
    """What the provider channel was sent, row by row (several rows may have gone out as one digest)."""
    import json

    from sqlalchemy import select

    from adapters.sql import tables as t

    c = t.notify_outbox.c
    with bot.app.storage.engine.connect() as conn:
        rows = conn.execute(select(c.reply).where(c.channel == "slack:C0HOSTOPS", c.state == "sent")).all()
    return [json.dumps(r.reply) for r in rows]


def _assert_split(bot: Bot) -> None:
    (card,) = bot.teams_cards()
    assert all(n in card for n in ACME_NAMES) and "no space left on device" in card
    assert not any(n in card for n in (*GLOBEX_NAMES, "orphan-01"))
    (globex,) = bot.slack_texts("C0GLOBEX")
    assert all(n in globex for n in GLOBEX_NAMES)
    assert not any(n in globex for n in (*ACME_NAMES, "orphan-01"))
    # the provider hears the whole of both nodes' runs (as two messages or one digest of them)
    host = " ".join(_provider_sent(bot))
    assert all(n in host for n in (*ACME_NAMES, *GLOBEX_NAMES, "orphan-01"))
    assert bot.slack_texts("C0HOSTOPS") and "db-01" in " ".join(bot.slack_texts("C0HOSTOPS"))


def _delivered(bot: Bot) -> bool:
    return bool(bot.teams_cards() and bot.slack_texts("C0GLOBEX") and len(_provider_sent(bot)) == 2)


async def test_install_then_a_run_is_pushed_split_and_delivered_to_slack_and_teams(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the poller reads once at start and then not for an hour: what arrives comes by push
    async with running(tmp_path, monkeypatch, poll_seconds=3600) as bot:
        code, out = await bot.cli("admin", "events", "install", "lab", "--url", bot.url)
        assert code == 0, out
        assert "webhook target 'pvebot' created" in out and "the test notification reached pvebot" in out
        assert bot.secret() not in out
        code, again = await bot.cli("admin", "events", "install", "lab", "--url", bot.url)
        assert code == 0 and "webhook target 'pvebot' updated" in again  # idempotent: one target, one matcher
        with bot.sim.state.lock:
            assert list(bot.sim.state.webhooks) == ["pvebot"] and list(bot.sim.state.matchers) == ["pvebot-matcher"]
            tests = list(bot.sim.state.webhook_sent)
        assert [outcome for *_, outcome in tests] == ["202", "202"]
        assert all(headers["X-Pvebot-Token"] == bot.secret() for _, _, headers, _, _ in tests)

        bot.run_backups()
        await until("the pushed run in Slack and Teams", lambda: _delivered(bot))
        with bot.sim.state.lock:
            pushes = [(url, outcome) for name, url, _, body, outcome in bot.sim.state.webhook_sent
                      if '"type":"vzdump"' in body]
        assert sorted(pushes) == [(f"{bot.url}/pve/events/lab?node=pve1", "202"),
                                  (f"{bot.url}/pve/events/lab?node=pve2", "202")]
        _assert_split(bot)
        code, status = await bot.cli("admin", "events", "status", "lab")
        assert code == 0 and "target 'pvebot' present" in status and "last push: never" not in status

        code, out = await bot.cli("admin", "events", "uninstall", "lab")
        assert code == 0 and "removed matcher 'pvebot-matcher' and webhook target 'pvebot'" in out
        with bot.sim.state.lock:
            assert bot.sim.state.webhooks == {} and bot.sim.state.matchers == {}


async def test_a_missing_or_wrong_secret_is_401_and_delivers_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, monkeypatch, poll_seconds=3600) as bot:
        assert await bot.push(token="anything") == 401  # nothing installed yet: no secret is right
        code, out = await bot.cli("admin", "events", "install", "lab", "--url", bot.url)
        assert code == 0, out
        with bot.sim.state.lock:
            bot.sim.state.matchers.clear()  # the cluster's own webhook stays silent in this test
        upids = bot.run_backups()
        await until("the runs to end", lambda: _ended(bot, upids))
        secret = bot.secret()
        assert await bot.push(token=None) == 401
        assert await bot.push(token="") == 401
        assert await bot.push(token=secret[:-1] + ("x" if secret[-1] != "x" else "y")) == 401
        assert await bot.push(token=secret + "x") == 401
        assert await bot.push(token=secret, cluster="nope") == 401
        # a refused push triggers nothing: no run was read, and the cluster's last push is the install's test
        assert bot.seen() == 0 and bot.outbox_rows() == 0
        assert bot.slack_texts("C0GLOBEX") == [] and bot.teams_cards() == []
        assert await bot.push(token=secret, node="pve1") == 202
        assert await bot.push(token=secret, node="pve2") == 202
        await until("the runs the right pushes asked for", lambda: _delivered(bot))
        _assert_split(bot)


def _ended(bot: Bot, upids: list[str]) -> bool:
    with bot.sim.state.lock:
        tasks = bot.sim._api.ctx.tasks.tasks
        return all(not tasks[u].running for u in upids)


async def test_a_push_that_never_arrives_is_delivered_by_the_pull(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, monkeypatch, poll_seconds=1) as bot:
        # no webhook installed at all: Proxmox never tells pvebot anything
        bot.run_backups()
        await until("the pulled runs in Slack and Teams", lambda: _delivered(bot))
        _assert_split(bot)
        with bot.sim.state.lock:
            assert bot.sim.state.webhook_sent == []


async def test_push_and_pull_of_one_run_deliver_it_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, monkeypatch, poll_seconds=1) as bot:
        code, out = await bot.cli("admin", "events", "install", "lab", "--url", bot.url)
        assert code == 0, out
        bot.run_backups()
        await until("the runs in Slack and Teams", lambda: _delivered(bot))
        await until("both pushes answered", lambda: len(
            [1 for *_, body, outcome in bot.sim.state.webhook_sent if '"type":"vzdump"' in body]) == 2)
        # three more polls of every node after both pushes were taken
        passes = 0

        def polled() -> bool:
            nonlocal passes
            passes += 1 if _lease_renewed(bot) else 0
            return passes >= 3

        await until("three more polls", polled)
        assert bot.seen() == 2  # one run per node
        # acme hears of pve1's run, globex of pve2's, the provider of both: one row each
        assert bot.outbox_rows() == 4
        assert len(bot.teams_cards()) == 1 and len(bot.slack_texts("C0GLOBEX")) == 1
        assert len(_provider_sent(bot)) == 2
        _assert_split(bot)


_last_until: dict[int, Any] = {}


def _lease_renewed(bot: Bot) -> bool:
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name("lab")
        assert cluster is not None and cluster.id is not None
        source = uow.event_sources.get(cluster.id)
    until_ = source.poller_until if source is not None else None
    key = id(bot)
    renewed = until_ is not None and _last_until.get(key) is not None and until_ > _last_until[key]
    if until_ is not None:
        _last_until[key] = until_
    return renewed


async def test_a_package_updates_push_delivers_the_nodes_updates(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # neither the poller nor the hourly updates check runs in this test: what arrives comes by push
    async with running(tmp_path, monkeypatch, poll_seconds=3600) as bot:
        code, out = await bot.cli("admin", "events", "install", "lab", "--url", bot.url)
        assert code == 0, out
        notifications.subscribe(bot.app.deps, principal(bot.app.storage, "root@host.example"), topic=Topic.UPDATES,
                                channel="slack:C0HOSTOPS")
        bot.sim.offer_update("pve1", "pve-manager", "8.4.2", old_version="8.4.1", origin="Proxmox")
        # pveupdate found it and notified: the matcher sends package-updates to pvebot like vzdump runs
        assert await bot.push(token=bot.secret(), node="pve1", kind="package-updates") == 202
        text = await until("the node's updates in the provider channel", lambda: " ".join(
            t for t in bot.slack_texts("C0HOSTOPS") if "updates on lab/pve1" in t))
        assert "pve-manager 8.4.1 → 8.4.2" in text, text


async def test_a_gone_slack_channel_and_teams_conversation_are_marked_broken_and_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path, monkeypatch, poll_seconds=1) as bot:
        # globex archived its channel; acme removed pvebot from its team
        bot.slack.archived.add("C0GLOBEX")
        bot.teams.gone.add(ACME_TEAMS)
        _ = bot.run_backups()

        def states() -> dict[str, str]:
            return {s.channel: s.state.value for s in _subscriptions(bot)}

        await until("both subscriptions marked broken", lambda: states()[f"teams:{ACME_TEAMS}"] == "broken"
                    and states()["slack:C0GLOBEX"] == "broken")
        problems = {s.channel: s.problem for s in _subscriptions(bot)}
        assert problems == {f"teams:{ACME_TEAMS}": "Teams answered HTTP 403",
                            "slack:C0GLOBEX": "Slack says is_archived", "slack:C0HOSTOPS": None}
        await until("the provider's messages", lambda: len(_provider_sent(bot)) == 2)

        def tried() -> tuple[int, int, int]:
            rows = bot.outbox_rows()
            return (len([c for c in bot.slack.of("chat.postMessage") if c.args.get("channel") == "C0GLOBEX"]),
                    len([c for c in bot.teams.calls if f"/conversations/{ACME_TEAMS}/" in c.path]),
                    rows - len(_provider_sent(bot)))

        before = tried()
        # another night's runs: the provider hears of both, the broken channels get nothing queued or tried
        _ = bot.run_backups()
        await until("the provider's messages of the second runs", lambda: len(_provider_sent(bot)) == 4)
        assert tried() == before
