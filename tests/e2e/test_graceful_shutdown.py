"""SIGTERM to real ``pvebot worker`` and ``pvebot serve`` processes: work in flight is finished or
settled and reported, never left RUNNING, and nobody's answer is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.crypto import generate_key
from bot.bootstrap import open_storage
from bot.config import Settings
from core.services.jobs import STOPPED_MIDWAY
from pvesim import PveSimulator
from tests.e2e.shell_world import ROOT, job_ids, world
from tests.proxmox_support import TOKEN_ID, TOKEN_SECRET, build_simulator
from tests.slack_support import FakeSlack, SlackSender, slack_env
from tests.support import provision


def _stop(process: subprocess.Popen[bytes], *, timeout: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


@pytest.mark.redis
def test_sigterm_lets_the_running_job_finish_then_the_worker_exits(tmp_path: Path) -> None:
    with world(tmp_path, queue="redis", task_seconds=1.0) as w:
        session, out = w.shell("bob@acme.example")
        session.run_line("vm shutdown web-01")
        job = job_ids(out.getvalue())[0]
        w.wait_state(job, {"running"})
        assert w.worker is not None and _stop(w.worker) == 0
        assert w.job_state(job) == "succeeded"  # RQ's warm shutdown: the job ran to its end
        session.flush()
        assert "✅ web-01 is shut down (done in" in out.getvalue().splitlines()[-1]
        assert w.sim.guest(100).status == "stopped"


@pytest.mark.redis
def test_a_second_sigterm_fails_the_job_with_a_clear_line_and_tells_the_user(tmp_path: Path) -> None:
    with world(tmp_path, queue="redis", task_seconds=30.0) as w:
        session, out = w.shell("bob@acme.example")
        session.run_line("vm shutdown web-01")
        job = job_ids(out.getvalue())[0]
        w.wait_state(job, {"running"})
        worker = w.worker
        assert worker is not None
        # RQ ignores a second signal within a second of the first; keep asking until it goes cold
        deadline = time.monotonic() + 20
        while worker.poll() is None and time.monotonic() < deadline:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=0.4)
            except subprocess.TimeoutExpired:
                pass
        assert worker.poll() is not None, "the worker did not stop"
        assert w.job_state(job) == "unknown"  # not RUNNING, and said so without waiting for the reaper
        session.flush()
        assert f"❓ outcome unknown: {STOPPED_MIDWAY}" in out.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _health_checks(base: str, process: subprocess.Popen[bytes]) -> None:
    """``GET /healthz``, each on a new connection, until ``process`` has ended."""
    while process.poll() is None:
        try:
            async with aiohttp.ClientSession() as fresh, fresh.get(f"{base}/healthz"):
                pass
        except aiohttp.ClientError:
            await asyncio.sleep(0.005)


SLACK_DOC = """\
clusters:
  - {{name: lab, api_urls: ["{url}"], token_id: "{token}", token_secret_env: PVE_LAB_TOKEN,
     tls: {{fingerprint: "{pin}"}}}}
companies:
  - {{slug: acme, name: Acme Corp, email_domains: [acme.example], pools: [{{cluster: lab, pool: acme}}]}}
users:
  - {{email: bob@acme.example, name: Bob User, role: user, company: acme,
     identities: [{{platform: slack, team_id: T0ACME, user_id: U0BOB}}]}}
"""


@dataclass
class Serving:
    """A real ``pvebot serve`` process, Slack on, over a simulated cluster."""

    process: subprocess.Popen[bytes]
    base: str
    sim: PveSimulator
    slack: SlackSender
    fake: FakeSlack
    log: Path

    def answers(self) -> list[Any]:
        return [c for c in self.fake.calls if c.method in ("response_url", "chat.postMessage")]

    async def stops_listening(self) -> bool:
        """Whether a new connection is refused before the process ends."""
        while self.process.poll() is None:
            try:
                async with aiohttp.ClientSession() as fresh, fresh.get(f"{self.base}/healthz"):
                    pass
            except aiohttp.ClientConnectionError:
                return True
        return False


@asynccontextmanager
async def serving(tmp_path: Path, *, grace: int, socket_mode: bool = False) -> AsyncIterator[Serving]:
    """``pvebot serve``, once it answers ``/healthz``; in Socket Mode (``socket_mode``) as soon as it has
    connected to Slack, which it does in its start-up, before it listens."""
    sim = build_simulator()
    server = sim.start()
    port = _free_port()
    env = {"PVEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pvebot.db'}", "PVEBOT_SECRET_KEY": generate_key(),
           "PVE_LAB_TOKEN": TOKEN_SECRET, "PVEBOT_HTTP_PORT": str(port), "PVEBOT_LOG_LEVEL": "INFO",
           "PVEBOT_SHUTDOWN_GRACE": str(grace)}
    storage = open_storage(Settings.from_mapping(env))
    provision(storage, SLACK_DOC.format(url=server.url, token=TOKEN_ID, pin=server.fingerprint), env)
    storage.engine.dispose()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "serve.log"
    with FakeSlack() as fake, open(log_path, "ab") as log:
        env.update(slack_env(fake, socket_mode=socket_mode))
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
        try:
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 30
                if socket_mode:
                    await fake.wait_for(lambda f: f.connected() or process.poll() is not None, timeout=30)
                while not socket_mode:
                    try:
                        async with session.get(f"{base}/healthz") as answer:
                            if answer.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        assert time.monotonic() < deadline and process.poll() is None, "serve did not start"
                        await asyncio.sleep(0.05)
                yield Serving(process, base, sim, SlackSender(session, bot_url=base, fake=fake), fake, log_path)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            sim.stop()


async def _owe_an_answer(serve: Serving, *, proxmox_takes: float) -> None:
    """A status asked in Slack, acked at once, whose answer waits ``proxmox_takes`` seconds for Proxmox
    (a status always asks Proxmox: the cached inventory cannot answer it)."""
    serve.sim.faults.slow(proxmox_takes, count=10)
    sent = await serve.slack.command("vm status web-01", as_="bob@acme.example")
    assert sent.status == 200 and not serve.answers()


async def test_sigterm_to_serve_stops_accepting_and_still_posts_the_answer_it_owes(tmp_path: Path) -> None:
    grace = 20  # far above the 2 s the owed answer takes: a stop that waited it out would show
    async with serving(tmp_path, grace=grace) as serve:
        await _owe_an_answer(serve, proxmox_takes=2.0)
        # a load balancer's health checks go on through the stop, on new connections
        checks = [asyncio.create_task(_health_checks(serve.base, serve.process)) for _ in range(4)]
        serve.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert await serve.stops_listening()  # it stops accepting at once ...
        # ... and exits cleanly once the owed answer is posted, not when the grace runs out (a
        # connection accepted as the listener closed once held it that long)
        assert await asyncio.to_thread(serve.process.wait, timeout=grace + 10) == 0
        took = time.monotonic() - signalled
        await asyncio.gather(*checks)
        assert any("web-01" in str(c.args) for c in serve.answers()), serve.log.read_text()
        assert took < grace / 2, serve.log.read_text()


async def test_a_second_sigterm_stops_serve_at_once(tmp_path: Path) -> None:
    async with serving(tmp_path, grace=60) as serve:
        await _owe_an_answer(serve, proxmox_takes=30.0)
        serve.process.send_signal(signal.SIGTERM)
        assert await serve.stops_listening()  # stopping, and waiting for the answer it owes
        serve.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(serve.process.wait, timeout=10) == -signal.SIGTERM


async def test_sigterm_while_serve_starts_in_socket_mode_stops_it_cleanly(tmp_path: Path) -> None:
    async with serving(tmp_path, grace=20, socket_mode=True) as serve:
        serve.process.send_signal(signal.SIGTERM)  # connected to Slack, its start-up perhaps not over
        assert await asyncio.to_thread(serve.process.wait, timeout=30) == 0, serve.log.read_text()
        await serve.fake.wait_for(lambda f: not f.connected())  # and it said goodbye to Slack


@pytest.mark.redis
def test_a_worker_serves_its_own_metrics(tmp_path: Path) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with world(tmp_path, queue="redis", start_worker=False) as w:
        port = _free_port()
        env = {**os.environ, **w.env, "PYTHONPATH": str(ROOT)}
        with open(tmp_path / "worker.log", "ab") as log:
            w.worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--metrics-port", str(port)],
                                        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        session, out = w.shell("bob@acme.example")
        session.run(["vm shutdown web-01"])
        job = job_ids(out.getvalue())[0]
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        assert samples[("pvebot_jobs_finished_total", (("action", "vm.shutdown"), ("state", "succeeded")))] == 1
        assert samples[("pvebot_proxmox_calls_total", (("cluster", "lab"), ("outcome", "ok")))] >= 2
        assert samples[("pvebot_queue_depth", ())] == 0
