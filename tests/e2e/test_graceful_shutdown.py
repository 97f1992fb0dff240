"""SIGTERM to real ``pvebot worker`` and ``pvebot serve`` processes: work in flight is finished or
settled and reported, never left RUNNING, and nobody's answer is lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from adapters.crypto import generate_key
from bot.bootstrap import open_storage
from bot.config import Settings
from core.services.jobs import STOPPED_MIDWAY
from tests.e2e.shell_world import ROOT, job_ids, world
from tests.proxmox_support import TOKEN_ID, TOKEN_SECRET, build_simulator
from tests.slack_support import BOT_TOKEN, SIGNING_SECRET, FakeSlack, SlackSender
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


async def test_sigterm_to_serve_stops_accepting_and_still_posts_the_answer_it_owes(tmp_path: Path) -> None:
    sim = build_simulator()
    server = sim.start()
    port = _free_port()
    # a grace well above the 2 s the owed answer takes, and no longer: a /healthz connection accepted in
    # the very instant the listener closes is left waiting by aiohttp until the grace ends
    env = {"PVEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pvebot.db'}", "PVEBOT_SECRET_KEY": generate_key(),
           "PVE_LAB_TOKEN": TOKEN_SECRET, "PVEBOT_HTTP_PORT": str(port), "PVEBOT_LOG_LEVEL": "INFO",
           "PVEBOT_SHUTDOWN_GRACE": "8"}
    storage = open_storage(Settings.from_mapping(env))
    provision(storage, SLACK_DOC.format(url=server.url, token=TOKEN_ID, pin=server.fingerprint), env)
    storage.engine.dispose()
    base = f"http://127.0.0.1:{port}"
    with FakeSlack() as fake, open(tmp_path / "serve.log", "ab") as log:
        env.update({"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "PVEBOT_SLACK_API_URL": fake.api_url})
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, stdout=log,
                                   stderr=subprocess.STDOUT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
        try:
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        async with session.get(f"{base}/healthz") as answer:
                            if answer.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        assert time.monotonic() < deadline and process.poll() is None, "serve did not start"
                        time.sleep(0.05)
                # Proxmox answers the listing only after 2 s: the ack goes out, the answer is owed
                sim.faults.slow(2.0)
                sent = await SlackSender(session, bot_url=base, fake=fake).command("vm list", as_="bob@acme.example")
                assert sent.status == 200
                process.send_signal(signal.SIGTERM)
                # it stops accepting at once ...
                refused = False
                while not refused and process.poll() is None:
                    try:
                        async with aiohttp.ClientSession() as fresh, fresh.get(f"{base}/healthz"):
                            pass
                    except aiohttp.ClientConnectionError:
                        refused = True
                assert refused
            # ... and exits cleanly once the owed answer is posted
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            sim.stop()
        answers = [c for c in fake.calls if c.method in ("response_url", "chat.postMessage")]
    assert any("web-01" in str(c.args) for c in answers), (tmp_path / "serve.log").read_text()


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
