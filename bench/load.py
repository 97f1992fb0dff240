"""Slack under load and a 429 storm: is every command answered and every job's verdict shown?

``pvebot serve`` (its own process, embedded queue) gets N signed ``/pve vm start …`` slash
commands at once, spread over C channels and 50 users, each queueing a job against the
Proxmox simulator over HTTPS (short tasks). A local fake of Slack's Web API (another process)
answers every ``chat.postMessage`` / ``chat.update`` / ``chat.postEphemeral`` with 429
(``Retry-After: 1``) for the first S seconds after the load starts. The bench then waits
until every job's message shows its verdict (or gives up after the outbox's bound plus a
margin) and prints, from the fake's recorded calls:

- commands answered (by bot token, ephemeral, or response_url) out of N;
- jobs whose verdict is shown in Slack out of jobs announced;
- the most posts/edits Slack saw in any one channel in any 1-second window, and the
  smallest gap between two of them in one channel (429-ed attempts included);
- the time from the first command to the last verdict.

Usage: python bench/load.py [N] [CHANNELS] [STORM_SECONDS]      (defaults: 200 20 10)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections import defaultdict
from pathlib import Path

import _path  # noqa: F401  (the repository first on sys.path)
import aiohttp

from adapters.crypto import generate_key
from pvesim import PveSimulator
from tests.slack_support import BOT_TOKEN, SIGNING_SECRET, sign

ROOT = Path(__file__).resolve().parents[1]
USERS = 50
PACED = ("chat.postMessage", "chat.update")
# how a job's message reads once it has ended (core.services.jobs.render): a success says what is now
# true and then "(done in N s)", the other ends lead with their mark
FINAL = ("done in ", "❌ failed", "⛔ cancelled", "❓ outcome unknown")
GIVE_UP = 130 + 60  # the outbox's bound (120 s + one HTTP timeout) and a margin for the queue


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.1)


def _run_fake_slack(port_file: str) -> None:
    from tests.slack_support import FakeSlack

    with FakeSlack(validate=False) as fake:
        Path(port_file).write_text(fake.url)
        while True:
            time.sleep(3600)


def _body(i: int, *, channels: int, slack_url: str) -> str:
    return urllib.parse.urlencode({
        "token": "legacy", "team_id": "T0BENCH", "team_domain": "bench", "channel_id": f"C0LOAD{i % channels:02d}",
        "channel_name": "load", "user_id": f"U0L{i % USERS:03d}", "user_name": "load", "command": "/pve",
        "text": f"vm start vm-{i:04d}", "api_app_id": "A0PVE", "response_url": f"{slack_url}/response/{i:04d}",
        "trigger_id": f"{uuid.uuid4().int % 10**12}.1.load"})


async def _send_all(url: str, *, n: int, channels: int, slack_url: str) -> int:
    """N signed slash commands at once; returns how many were not acknowledged with 200."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n)) as session:

        async def one(i: int) -> int:
            body = _body(i, channels=channels, slack_url=slack_url)
            ts = int(time.time())
            headers = {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(ts),
                       "X-Slack-Signature": sign(body, timestamp=ts)}
            async with session.post(url + "/slack/events", data=body.encode(), headers=headers) as response:
                await response.read()
                return int(response.status != 200)

        return sum(await asyncio.gather(*(one(i) for i in range(n))))


def _tally(record: dict, *, n: int) -> dict:
    """What Slack shows: answered commands, announced jobs, jobs with a verdict, and when it came."""
    calls = record["calls"]
    answered: set[str] = set()
    announced: set[str] = set()
    verdict_at: dict[str, float] = {}
    for call in calls:
        if call["status"] != 200:
            continue
        content = call["text"] + call["blocks"]
        if call["method"] in ("chat.postMessage", "chat.postEphemeral", "response_url"):
            answered.update(re.findall(r"vm start (vm-\d{4})", content))
            if "queued job-" in content:
                announced.update(re.findall(r"queued (job-\w+)", content))
        if call["method"] in PACED and any(mark in content for mark in FINAL):
            for job in re.findall(r"(job-\w+):", content):
                verdict_at.setdefault(job, call["at"])
    return {"answered": len(answered), "announced": announced, "verdicts": verdict_at, "n": n}


def _pace(record: dict) -> tuple[int, float]:
    """The most paced calls in one channel within any 1 s window, and the smallest gap in one channel."""
    times: dict[str, list[float]] = defaultdict(list)
    for call in record["calls"]:
        if call["method"] in PACED:
            times[call["channel"]].append(call["at"])
    most, gap = 0, float("inf")
    for at in times.values():
        at.sort()
        gap = min([gap] + [b - a for a, b in zip(at, at[1:], strict=False)])
        j = 0
        for i, t in enumerate(at):
            while at[j] <= t - 1.0:
                j += 1
            most = max(most, i - j + 1)
    return most, gap


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    channels = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    storm = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    tmp = Path(tempfile.mkdtemp(prefix="pvebot-load-"))
    python = sys.executable
    secret = generate_key()
    sim = PveSimulator(task_seconds=0.2)
    sim.add_token("pvebot@pve!bot", secret)
    sim.add_node("pve1")
    sim.add_storage("local-lvm", content="images,rootdir")
    for i in range(n):
        sim.add_guest(vmid=1000 + i, name=f"vm-{i:04d}", node="pve1", pool="acme", status="stopped")
    server = sim.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port_file = tmp / "fake-slack.url"
        procs.append(subprocess.Popen([python, __file__, "--fake-slack", str(port_file)], cwd=ROOT))
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        slack_url = port_file.read_text()
        users = "".join(f"  - {{email: u{i}@acme.example, name: User {i}, role: user, company: acme, identities: "
                        f"[{{platform: slack, team_id: T0BENCH, user_id: U0L{i:03d}}}]}}\n" for i in range(USERS))
        (tmp / "tenants.yaml").write_text(f"""\
clusters:
  - {{name: lab, api_urls: ["{server.url}"], token_id: "pvebot@pve!bot", token_secret_env: PVE_LAB_TOKEN,
     tls: {{fingerprint: "{server.fingerprint}"}}}}
companies:
  - {{slug: acme, name: Acme, email_domains: [acme.example], pools: [{{cluster: lab, pool: acme}}]}}
users:
""" + users)
        env = {**os.environ, "PVEBOT_DATA_DIR": str(tmp), "PVEBOT_SECRET_KEY": generate_key(),
               "PVE_LAB_TOKEN": secret, "PVEBOT_LOG_LEVEL": "ERROR", "SLACK_BOT_TOKEN": BOT_TOKEN,
               "SLACK_SIGNING_SECRET": SIGNING_SECRET, "PVEBOT_SLACK_API_URL": slack_url + "/api/",
               "PVEBOT_EMBEDDED_WORKERS": "8", "PYTHONPATH": str(ROOT)}
        for name in ("SLACK_APP_TOKEN", "PVEBOT_REDIS_URL"):
            env.pop(name, None)
        pvebot = [python, "-m", "bot.cli"]
        subprocess.run([*pvebot, "admin", "apply", str(tmp / "tenants.yaml")], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        port = _free_port()
        procs.append(subprocess.Popen([*pvebot, "serve"], cwd=tmp, env={**env, "PVEBOT_HTTP_PORT": str(port)}))
        bot_url = f"http://127.0.0.1:{port}"
        _wait_http(bot_url + "/healthz")

        print(f"{n} signed '/pve vm start' commands at once over {channels} channels, {USERS} users; fake Slack "
              f"answers 429 (Retry-After: 1) to every chat call for the first {storm:g} s; simulator tasks 0.2 s")
        urllib.request.urlopen(urllib.request.Request(
            f"{slack_url}/storm?seconds={storm}&retry_after=1", method="POST"), timeout=5).close()
        began = time.monotonic()
        not_acked = asyncio.run(_send_all(bot_url, n=n, channels=channels, slack_url=slack_url))
        while True:
            tally = _tally(_get(slack_url + "/record"), n=n)
            done = tally["answered"] >= n and set(tally["verdicts"]) >= tally["announced"]
            if done or time.monotonic() - began > GIVE_UP:
                break
            time.sleep(0.5)
        record = _get(slack_url + "/record")
        tally = _tally(record, n=n)
        most, gap = _pace(record)
        by_url = sum(1 for c in record["calls"] if c["method"] == "response_url" and c["status"] == 200)
        rejected = sum(1 for c in record["calls"] if c["status"] == 429)
        shown = len(set(tally["verdicts"]) & tally["announced"])
        last = max(tally["verdicts"].values(), default=began) - began
        print(f"acks not 200: {not_acked}")
        print(f"commands answered: {tally['answered']} of {n} ({by_url} through response_url)")
        print(f"job verdicts shown: {shown} of {len(tally['announced'])} jobs announced")
        print(f"max posts/edits per channel in any 1 s window: {most} (smallest gap in one channel: {gap:.2f} s); "
              f"{rejected} calls answered 429")
        print(f"time from the first command to the last verdict: {last:.1f} s")
        return 0 if tally["answered"] == n and shown == len(tally["announced"]) == n else 1
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        sim.stop()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--fake-slack":
        _run_fake_slack(sys.argv[2])
    else:
        raise SystemExit(main())
