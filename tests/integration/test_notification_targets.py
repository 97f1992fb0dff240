"""The gateway's notification-target calls against the simulator, and the simulator's PVE behaviour.

Through proxmoxer over HTTPS: a webhook target's list parameters arrive as PVE arrays, its secret is
never given back (only its name), a matcher cannot take a target's name, a missing field does not
match, and a vzdump run notifies through a matching webhook once, not for a job that still mails.
The receiver is a small aiohttp app on loopback that records what it is sent.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from adapters.crypto import FernetCipher
from adapters.proxmox import ProxmoxHypervisors
from core.errors import BotError
from pvesim import PveSimulator, SimServer
from pvesim.api_notify import render
from tests.proxmox_support import make_cluster, pve_cipher, pve_hypervisors, pve_sim

__all__ = ["pve_cipher", "pve_hypervisors", "pve_sim"]


class Receiver:
    """An HTTP endpoint on its own loop that answers ``status`` and keeps each request."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.got: list[tuple[str, dict[str, str], str]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def take(request: web.Request) -> web.Response:
            self.got.append((str(request.rel_url), dict(request.headers), await request.text()))
            return web.Response(status=self.status)

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/{tail:.*}", take)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def gateway(pve_sim: tuple[PveSimulator, SimServer], pve_cipher: FernetCipher,
            pve_hypervisors: ProxmoxHypervisors) -> Iterator[Any]:
    _, server = pve_sim
    yield pve_hypervisors.for_cluster(make_cluster(server, cipher=pve_cipher))


def _install(gateway: Any, url: str) -> None:
    gateway.save_webhook("pvebot", url=url + "/hook?node={{ url-encode fields.hostname }}",
                         headers={"Content-Type": "application/json", "X-Token": "{{ secrets.token }}"},
                         body='{"f":{{ json fields }},"t":"{{ escape title }}"}', secrets={"token": "s3cr3t"},
                         comment="pvebot", create=True)


def test_targets_keep_their_secret_and_matchers_their_own_names(gateway: Any,
                                                                pve_sim: tuple[PveSimulator, SimServer]) -> None:
    sim, _ = pve_sim
    _install(gateway, "http://127.0.0.1:9")
    (target,) = gateway.webhooks()
    assert target.name == "pvebot" and target.secret_names == ("token",) and "{{" in target.url
    with sim.state.lock:
        assert sim.state.webhooks["pvebot"]["header"][1].startswith("name=X-Token,value=")  # two headers: an array
        assert sim.state.webhook_secrets["pvebot"] == {"token": "s3cr3t"}
        assert "s3cr3t" not in json.dumps(sim.state.webhooks)
    with pytest.raises(BotError):
        gateway.save_matcher("pvebot", targets=["pvebot"], match_fields=["exact:type=vzdump"], comment="",
                             create=True)
    with pytest.raises(BotError):
        gateway.save_matcher("m", targets=["pvebot"], match_fields=["type=vzdump"], comment="", create=True)
    gateway.save_matcher("pvebot-matcher", targets=["pvebot"], match_fields=["exact:type=vzdump,package-updates"],
                         comment="", create=True)
    (matcher,) = gateway.matchers()
    assert matcher.match_fields == ("exact:type=vzdump,package-updates",) and matcher.targets == ("pvebot",)
    with pytest.raises(BotError):  # the receiver at port 9 is not there: the test call says so
        gateway.test_target("pvebot")
    gateway.delete_matcher("pvebot-matcher")
    gateway.delete_webhook("pvebot")
    assert gateway.webhooks() == [] and gateway.matchers() == []


def _wait(check: Any) -> Any:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.02)


def test_a_vzdump_run_notifies_a_matching_webhook_once_and_a_mailing_job_not_at_all(
        gateway: Any, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    sim, _ = pve_sim
    with Receiver() as receiver:
        _install(gateway, receiver.url)
        gateway.save_matcher("only-pve9", targets=["pvebot"], match_fields=["exact:hostname=pve9"], comment="",
                             create=True)
        gateway.save_matcher("job-id", targets=["pvebot"], match_fields=["regex:job-id=.*"], comment="", create=True)
        gateway.save_matcher("vzdump", targets=["pvebot"], match_fields=["exact:type=vzdump"], comment="",
                             create=True)
        gateway.test_target("pvebot")
        assert len(receiver.got) == 1
        task = gateway.run_backup(node="pve1", options={"vmid": "100", "storage": "local"})
        assert task is not None
        _wait(lambda: len(receiver.got) == 2)
        url, headers, body = receiver.got[1]
        assert url == "/hook?node=pve1" and headers["X-Token"] == "s3cr3t"
        sent = json.loads(body)
        # ad-hoc runs carry no job-id, so the job-id matcher did not match and pve9's neither: sent once
        assert sent["f"] == {"type": "vzdump", "hostname": "pve1"}
        assert sent["t"].startswith("vzdump backup status (pve1")
        with sim.state.lock:
            sim.state.backup_jobs["mailing"] = {"id": "mailing", "schedule": "21:00", "vmid": "100",
                                                "storage": "local", "mailto": "ops@example.com"}
            sim.state.backup_jobs["quiet"] = {"id": "quiet", "schedule": "21:00", "vmid": "100", "storage": "local",
                                              "mailto": "ops@example.com", "notification-mode": "notification-system"}
        upids = sim.run_backup_job("mailing") + sim.run_backup_job("quiet")
        _wait(lambda: all(not sim._api.ctx.tasks.tasks[u].running for u in upids))
        # the mailing job ran first (the quiet one waited for the guest's lock): had it notified, its
        # request would have come before the quiet one's
        _wait(lambda: len(receiver.got) >= 3)
        assert [json.loads(b)["f"].get("job-id") for _, _, b in receiver.got[2:]] == ["quiet"]


def test_the_renderer_escapes_only_when_asked() -> None:
    data = {"title": 'a "b"', "fields": {"hostname": "pve 1"}, "secrets": {"t": "x"}, "timestamp": 5}
    assert render('{{ escape title }}|{{ url-encode fields.hostname }}|{{ json fields }}|{{ timestamp }}|'
                  '{{ fields.job-id }}|{{secrets.t}}', data) == 'a \\"b\\"|pve%201|{"hostname":"pve 1"}|5||x'
