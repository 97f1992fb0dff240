"""``pvebot serve``: the aiohttp application that Slack and Teams post to."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.bootstrap import App

log = logging.getLogger(__name__)
APP_KEY = web.AppKey("pvebot", App)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(app: App) -> web.Application:
    """The HTTP face of ``app``: ``/healthz``, and each chat platform that is configured."""
    web_app = web.Application()
    web_app[APP_KEY] = app
    web_app.router.add_get("/healthz", healthz)
    _mount_slack(web_app, app)
    _mount_teams(web_app, app)
    return web_app


def _mount_slack(web_app: web.Application, app: App) -> None:
    """``POST /slack/events`` when Slack is configured for HTTP mode; Socket Mode with an app token."""
    settings = app.settings
    if settings.slack_bot_token is None:
        return
    if settings.slack_signing_secret is None and settings.slack_app_token is None:
        log.warning("SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN: Slack is off")
        return
    from adapters.slack.app import build_bolt_app, mount

    bolt = build_bolt_app(dispatcher=app.dispatcher, bot_token=settings.slack_bot_token,
                          signing_secret=settings.slack_signing_secret, base_url=settings.slack_api_url)
    mount(web_app, bolt, http=settings.slack_signing_secret is not None, app_token=settings.slack_app_token)


def _mount_teams(web_app: web.Application, app: App) -> None:
    """``POST /api/messages`` for Teams."""
    from adapters.teams.app import mount

    mount(web_app, settings=app.settings, dispatcher=app.dispatcher, uow_factory=app.deps.uow_factory,
          notifiers=app.notifier, directories=app.directory)
