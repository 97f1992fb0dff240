"""``pvebot serve``: the aiohttp application that Slack and Teams post to.

It only mounts what the composition root built (``bot.bootstrap.build_server``): the bolt app
and the Teams endpoint share that process's notifiers, directories and dispatcher.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bot.bootstrap import App

log = logging.getLogger(__name__)
APP_KEY = web.AppKey("pvebot", App)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(app: App, *, slack: Any | None = None, teams: Any | None = None) -> web.Application:
    """The HTTP face of ``app``: ``/healthz``, Slack's bolt app and Teams' endpoint when given."""
    web_app = web.Application()
    web_app[APP_KEY] = app
    web_app.router.add_get("/healthz", healthz)
    if slack is not None:
        from adapters.slack.app import mount as mount_slack

        settings = app.settings
        mount_slack(web_app, slack, signing_secret=settings.slack_signing_secret, app_token=settings.slack_app_token)
    if teams is not None:
        from adapters.teams.app import mount as mount_teams

        mount_teams(web_app, teams)
    return web_app
