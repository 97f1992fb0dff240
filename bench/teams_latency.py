"""Teams: activity → HTTP answer latency of pvebot beside a bare botbuilder echo bot, in the same run.

Both sit behind the same fake Bot Framework on loopback (JWT validation on, replies posted to a
fake connector with msal-acquired tokens), so the ratio is what pvebot adds: our auth edge,
translation, the dispatcher (identity, rate limit, audit in SQLite), rendering and the delivery path.

    .venv/bin/python -m bench.teams_latency [--messages 500] [--concurrency 50] [--text whoami]

(run as a module from the repository root: run as a script, bench/ would shadow the top-level packages)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import _path  # noqa: F401  (the repository first on sys.path)
import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from botbuilder.core import ActivityHandler, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter

from adapters.queue import EmbeddedQueue
from adapters.teams.auth import build_authentication
from adapters.teams.setup import config_of
from bot.bootstrap import build_app, build_server
from bot.dispatch import RateLimiter
from tests.support import make_storage, provision
from tests.teams_support import FakeBotFramework, message, standard_hypervisors, teams_settings


class EchoBot(ActivityHandler):  # type: ignore[misc]
    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(MessageFactory.text(f"echo: {turn_context.activity.text}"))


def echo_app(settings: Any) -> web.Application:
    """The botbuilder sample's shape: CloudAdapter.process on POST /api/messages."""
    config = config_of(settings)
    adapter = CloudAdapter(build_authentication(config, config.tokens()))
    bot = EchoBot()

    async def messages(request: web.Request) -> web.Response:
        return await adapter.process(request, bot)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    return app


async def measure(url: str, fake: FakeBotFramework, *, text: str, count: int, concurrency: int) -> list[float]:
    gate = asyncio.Semaphore(concurrency)
    token = fake.issue()
    timings: list[float] = []
    users = ["aad-bob", "aad-alice"]

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        body = json.dumps(message(fake, text, user=users[i % 2]))
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        async with gate:
            start = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status >= 300:
                    raise RuntimeError(f"HTTP {response.status}")
            timings.append(time.perf_counter() - start)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(one(session, i) for i in range(count)))
    return timings


def figures(timings: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pvebot-bench-"))
    fake = FakeBotFramework(tmp).start()
    os.environ["REQUESTS_CA_BUNDLE"] = str(fake.cert)  # msal's https to the fake Azure AD
    storage = make_storage(f"sqlite:///{tmp / 'pvebot.db'}")
    provision(storage)
    settings = teams_settings(storage, fake)
    app = build_app(settings, storage=storage, hypervisors=standard_hypervisors(), queue=EmbeddedQueue(workers=1))
    app.dispatcher.rate_limiter = RateLimiter(limit=10**6)  # the bench is one user hammering: measure, not throttle
    servers = {"pvebot": TestServer(build_server(app), host="127.0.0.1"),
               "echo": TestServer(echo_app(settings), host="127.0.0.1")}
    results: dict[str, tuple[float, float]] = {}
    try:
        for server in servers.values():
            await server.start_server()
        for name, server in servers.items():
            url = str(server.make_url("/api/messages"))
            await measure(url, fake, text=args.text, count=50, concurrency=args.concurrency)  # warm up
            timings = await measure(url, fake, text=args.text, count=args.messages, concurrency=args.concurrency)
            results[name] = figures(timings)
    finally:
        for server in servers.values():
            await server.close()
        app.close()
        fake.stop()
        storage.engine.dispose()
    print(f"{args.messages} messages ('{args.text}'), concurrency {args.concurrency}, activity -> HTTP answer:")
    for name, (p50, p99) in results.items():
        print(f"  {name:<7} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
    (p50, p99), (e50, e99) = results["pvebot"], results["echo"]
    print(f"  ratio   p50 {p50 / e50:7.2f} x    p99 {p99 / e99:7.2f} x   (pvebot / bare echo bot)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--text", default="whoami")
    asyncio.run(main(parser.parse_args()))
