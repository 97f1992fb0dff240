"""Slack ack latency: ``pvebot serve`` against a bare bolt ``AsyncApp`` that only acks.

Both servers run as their own processes on loopback behind the same aiohttp adapter; a local
fake of Slack's Web API (a third process) takes pvebot's replies. The client sends N signed
``/pve whoami`` slash commands at concurrency C to each (after a short warm-up) and prints
p50/p99 ack latency, acks per second and the ratio pvebot/bare. pvebot does its real work
after each ack (identity, audit, reply with chat.postMessage), so the figures include that
background load. ``whoami`` needs no Proxmox; 200 users share the load so that the per-user
rate limit does not turn the run into error replies.

Usage: python bench/slack_ack.py [N] [CONCURRENCY]      (defaults: 500 50)
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from tests.slack_support import BOT_TOKEN, SIGNING_SECRET, sign  # noqa: E402

USERS = 200
ROUNDS = 3
DOC = """\
clusters:
  - {name: lab, api_urls: ["https://127.0.0.1:9"], token_id: "pvebot@pve!bot", token_secret_env: PVE_LAB_TOKEN,
     tls: {verify: false}}
companies:
  - {slug: acme, name: Acme Corp, email_domains: [acme.example], pools: [{cluster: lab, pool: acme}]}
users:
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def _wait_replies(slack_url: str, expected: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(slack_url + "/stats", timeout=5) as response:
            counts = json.loads(response.read())
            posted = counts.get("chat.postMessage", 0) + counts.get("chat.postEphemeral", 0)
        if posted >= expected:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"pvebot posted {posted} of {expected} replies")
        time.sleep(0.1)


# ---- the processes under test ------------------------------------------------------------


def _run_fake_slack(port_file: str) -> None:
    from tests.slack_support import FakeSlack

    with FakeSlack(validate=False) as fake:
        Path(port_file).write_text(fake.url)
        while True:
            time.sleep(3600)


def _run_bare(port: int, api_url: str) -> None:
    from aiohttp import web
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    bolt = AsyncApp(client=AsyncWebClient(token=BOT_TOKEN, base_url=api_url), signing_secret=SIGNING_SECRET,
                    process_before_response=False)

    @bolt.command("/pve")
    async def only_ack(ack):  # type: ignore[no-untyped-def]
        await ack()

    async def events(request: web.Request) -> web.Response:
        # bolt's own aiohttp adapter, without our edge: the baseline includes none of pvebot's work
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    web_app = web.Application()
    web_app.router.add_post("/slack/events", events)
    web_app.router.add_get("/healthz", lambda _: web.json_response({"status": "ok"}))
    web.run_app(web_app, host="127.0.0.1", port=port, print=None)


# ---- the client ---------------------------------------------------------------------------


def _body(i: int) -> str:
    return urllib.parse.urlencode({
        "token": "legacy", "team_id": "T0BENCH", "team_domain": "bench", "channel_id": "C0BENCH",
        "channel_name": "bench", "user_id": f"U0B{i % USERS:03d}", "user_name": "bench", "command": "/pve",
        "text": "whoami", "api_app_id": "A0PVE", "response_url": "http://127.0.0.1:9/unused",
        "trigger_id": f"{uuid.uuid4().int % 10**12}.1.bench"})


async def _load(url: str, *, n: int, concurrency: int) -> tuple[list[float], float, int]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            nonlocal failures
            body = _body(i)
            async with gate:
                ts = int(time.time())
                headers = {"Content-Type": "application/x-www-form-urlencoded",
                           "X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sign(body, timestamp=ts)}
                start = time.perf_counter()
                async with session.post(url + "/slack/events", data=body.encode(), headers=headers) as response:
                    await response.read()
                    latencies.append(time.perf_counter() - start)
                    failures += response.status != 200

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - start
    return latencies, wall, failures


def _figures(name: str, latencies: list[float], wall: float, failures: int) -> dict[str, float]:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000
    rate = len(ordered) / wall
    print(f"{name:8s} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   max {ordered[-1] * 1000:7.1f} ms   "
          f"{rate:7.1f} acks/s   non-200: {failures}")
    return {"p50": p50, "p99": p99, "rate": rate}


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    from adapters.crypto import generate_key

    tmp = Path(tempfile.mkdtemp(prefix="pvebot-bench-"))
    python = sys.executable
    procs: list[subprocess.Popen[bytes]] = []
    try:
        port_file = tmp / "fake-slack.url"
        procs.append(subprocess.Popen([python, __file__, "--fake-slack", str(port_file)], cwd=ROOT))
        while not port_file.exists() or not port_file.read_text():
            time.sleep(0.05)
        api_url = port_file.read_text() + "/api/"

        users = "".join(f"  - {{email: u{i}@acme.example, name: User {i}, role: user, company: acme, identities: "
                        f"[{{platform: slack, team_id: T0BENCH, user_id: U0B{i:03d}}}]}}\n" for i in range(USERS))
        (tmp / "tenants.yaml").write_text(DOC + users)
        env = {**os.environ, "PVEBOT_DATA_DIR": str(tmp), "PVEBOT_SECRET_KEY": generate_key(),
               "PVE_LAB_TOKEN": "bench-secret-0123456789", "PVEBOT_LOG_LEVEL": "WARNING",
               "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
               "PVEBOT_SLACK_API_URL": api_url}
        env.pop("SLACK_APP_TOKEN", None)
        pvebot = [python, "-m", "bot.cli"]
        subprocess.run([*pvebot, "admin", "apply", str(tmp / "tenants.yaml")], cwd=ROOT, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        pvebot_port, bare_port = _free_port(), _free_port()
        procs.append(subprocess.Popen([*pvebot, "serve"], cwd=tmp, env={**env, "PVEBOT_HTTP_PORT": str(pvebot_port)}))
        procs.append(subprocess.Popen([python, __file__, "--bare", str(bare_port), api_url], cwd=ROOT))
        targets = {"bare": f"http://127.0.0.1:{bare_port}", "pvebot": f"http://127.0.0.1:{pvebot_port}"}
        for url in targets.values():
            _wait_http(url + "/healthz")

        print(f"{n} signed slash commands at concurrency {concurrency}, loopback, one process per server; "
              f"{ROUNDS} alternating rounds pooled")
        slack_url = api_url.removesuffix("/api/")
        pooled: dict[str, tuple[list[float], float, int]] = {name: ([], 0.0, 0) for name in targets}
        expected = 0
        for url in targets.values():
            asyncio.run(_load(url, n=50, concurrency=10))  # warm-up: connections, auth.test, imports
        expected += 50
        _wait_replies(slack_url, expected)
        for _ in range(ROUNDS):
            for name, url in targets.items():
                latencies, wall, failures = asyncio.run(_load(url, n=n, concurrency=concurrency))
                all_latencies, all_wall, all_failures = pooled[name]
                pooled[name] = (all_latencies + latencies, all_wall + wall, all_failures + failures)
                if name == "pvebot":
                    # the next round starts when pvebot has posted every reply, not while it still works
                    expected += n
                    _wait_replies(slack_url, expected)
        results = {name: _figures(name, *figures) for name, figures in pooled.items()}
        bare, ours = results["bare"], results["pvebot"]
        print(f"ratio pvebot/bare: p50 {ours['p50'] / bare['p50']:.2f}   p99 {ours['p99'] / bare['p99']:.2f}   "
              f"acks/s {bare['rate'] / ours['rate']:.2f} (goal: <= 1.5, p99 far under 3000 ms)")
        print(f"pvebot posted {expected} replies with chat.postMessage (warm-up included)")
        return 0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--fake-slack":
        _run_fake_slack(sys.argv[2])
    elif len(sys.argv) > 3 and sys.argv[1] == "--bare":
        _run_bare(int(sys.argv[2]), sys.argv[3])
    else:
        raise SystemExit(main())
