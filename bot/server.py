"""``pvebot serve``: the aiohttp application that Slack and Teams post to, and its health endpoints.

It only mounts what the composition root built (``bot.bootstrap.build_server``): the bolt app and
the Teams endpoint share that process's notifiers, directories and dispatcher; ``/pve/events/<cluster>``
takes Proxmox's webhooks (:mod:`bot.events`). ``/healthz`` says the
process lives (for a restart policy), ``/readyz`` that its database and Redis answer (for a load
balancer: 503 takes the instance out of rotation without restarting it), and ``/metrics`` is
Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bot.bootstrap import App
from bot.config import cannot_listen
from bot.events import PushedPulls
from bot.events import route as events_route
from bot.health import Readiness

log = logging.getLogger(__name__)
# how long the connections the listener accepted just before it closed take to reach aiohttp's books
_ACCEPTS_SETTLE_SECONDS = 0.1
APP_KEY = web.AppKey("pvebot", App)
READINESS_KEY = web.AppKey("pvebot-readiness", Readiness)
PULLS_KEY = web.AppKey("pvebot-pushed-pulls", PushedPulls)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks = await asyncio.to_thread(request.app[READINESS_KEY].check)
    ready = all(state == "ok" for state in checks.values())
    return web.json_response({"status": "ok" if ready else "unavailable", "checks": checks},
                             status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    from adapters.metrics import CONTENT_TYPE

    app = request.app[APP_KEY]
    body = await asyncio.to_thread(app.telemetry.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def create_app(app: App, *, slack: Any | None = None, teams: Any | None = None) -> web.Application:
    """The HTTP face of ``app``: health, readiness, metrics, Slack's bolt app and Teams' endpoint when given."""
    web_app = web.Application()
    web_app[APP_KEY] = app
    web_app[READINESS_KEY] = Readiness(app.settings, engine=app.storage.engine)
    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/readyz", readyz)
    web_app.router.add_get("/metrics", metrics)
    web_app.on_cleanup.append(_close_readiness)
    # Proxmox webhooks: a node has news; the pull runs on a thread of its own, off the request path
    pulls = PushedPulls(app.deps)
    web_app[PULLS_KEY] = pulls
    web_app.router.add_routes([events_route(app.deps, app.storage.cipher, pulls)])
    web_app.on_startup.append(_start_pulls)
    web_app.on_cleanup.append(_stop_pulls)
    if slack is not None:
        from adapters.slack.app import mount as mount_slack

        settings = app.settings
        mount_slack(web_app, slack, signing_secret=settings.slack_signing_secret, app_token=settings.slack_app_token)
    if teams is not None:
        from adapters.teams.app import mount as mount_teams

        mount_teams(web_app, teams)
    # last, so that its exit runs first: before the chat clients' sessions close
    web_app.cleanup_ctx.append(lambda _: _drain(app.settings.shutdown_grace))
    return web_app


async def _drain(grace: float) -> AsyncIterator[None]:
    """On shutdown, wait for the work that requests started after answering (a Slack listener runs
    after its ack and still owes its post), at most ``grace`` seconds.

    What runs when the app has started (Socket Mode's connection) is not waited for: it ends with
    the clients' cleanup, after this.
    """
    baseline = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    owed = [t for t in asyncio.all_tasks() if t not in baseline and t is not current and not t.done()]
    if not owed:
        return
    log.info("stopping: finishing %d piece(s) of work first", len(owed))
    _, left = await asyncio.wait(owed, timeout=grace)
    if left:
        log.warning("stopping with %d piece(s) of work unfinished after %s s", len(left), grace)


async def _start_pulls(web_app: web.Application) -> None:
    web_app[PULLS_KEY].start()


async def _stop_pulls(web_app: web.Application) -> None:
    await asyncio.to_thread(web_app[PULLS_KEY].stop)


async def _close_readiness(web_app: web.Application) -> None:
    web_app[READINESS_KEY].close()


def run(web_app: web.Application, *, host: str, port: int, grace: float) -> None:
    """Serve ``web_app`` on ``host:port`` until SIGTERM or SIGINT, then stop gracefully: stop listening,
    let requests in flight finish (up to ``grace`` seconds), then the work they started after
    answering (:func:`_drain`). A second signal stops at once."""
    asyncio.run(_serve_until_signalled(web_app, host=host, port=port, grace=grace))


async def _serve_until_signalled(web_app: web.Application, *, host: str, port: int, grace: float) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
            # the system's default again: a second signal ends the process at once (Python's own
            # for SIGINT, a KeyboardInterrupt, would still wait for the threads of work in flight)
            signal.signal(signum, signal.SIG_DFL)
        stopping.set()

    # before the start-up, which can take a while (Socket Mode connects to Slack in it): a signal
    # then stops the start as gracefully as it stops the serving
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop)
    runner = web.AppRunner(web_app, shutdown_timeout=grace)
    await runner.setup()
    try:
        if stopping.is_set():
            return
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as e:
            raise cannot_listen(host, port, e, port_settings=("PVEBOT_HTTP_PORT", "--port"),
                                host_settings=("PVEBOT_HTTP_HOST", "--host")) from None
        log.info("serving on http://%s:%d", host, port)
        await stopping.wait()
        # aiohttp closes the idle connections it knows of when it shuts down; one whose accept was
        # still under way when the listener closed would be missed, and its handler would wait out
        # the whole grace (aiohttp ignores the request of a connection once shutting down). So the
        # listener closes first, and those accepts land before the shutdown begins.
        await site.stop()
        log.info("stopping: no new connections; finishing what is in flight (at most %s s)", grace)
        await asyncio.sleep(_ACCEPTS_SETTLE_SECONDS)
    finally:
        await runner.cleanup()

