"""``POST /api/messages``: botbuilder's ``CloudAdapter`` behind our auth edge, and the bot's turn logic.

The turn is thin: translate (``translate.py``), dispatch, then hand the answer and how to send it here
(render with ``render.py``, send) to the dispatcher's one delivery path, which starts the jobs under
the sent reply and tracks approval cards. Everything here is built once, by ``bot/bootstrap.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from botbuilder.core import ActivityHandler, InvokeResponse, TurnContext
from botbuilder.core import serializer_helper as _serialize
from botbuilder.integration.aiohttp import CloudAdapter
from botbuilder.schema import Activity
from botframework.connector.auth import BotFrameworkAuthentication

from adapters.teams import render
from adapters.teams.auth import Unauthorized, authenticate, prefetch_openid_metadata
from adapters.teams.directory import TeamsDirectory
from adapters.teams.notifier import Audience, audience_of
from adapters.teams.setup import TeamsConfig
from adapters.teams.translate import MalformedActivity, service_url_of, to_incoming
from core.chat import Answer, MessageRef, Reply, Severity

log = logging.getLogger("pvebot.teams")


class PvebotTeamsBot(ActivityHandler):  # type: ignore[misc]
    """Typed messages and card presses become commands; replies become Adaptive Cards."""

    def __init__(self, *, dispatcher: Any, directory: TeamsDirectory | None, audience: Audience | None) -> None:
        self.dispatcher = dispatcher
        self.directory = directory
        self.audience = audience

    async def _run(self, incoming: Any) -> Answer:
        request = incoming.request
        if self.directory is not None:
            self.directory.remember(request.conversation, workspace_id=request.identity.workspace_id,
                                    user_id=request.identity.user_id)
        answer: Answer = await self.dispatcher.handle_async(request)
        return answer

    async def _audience(self, reply: Reply, incoming: Any) -> list[str]:
        if not any(a.only_for for a in reply.actions):
            return []
        return await asyncio.to_thread(audience_of, reply, incoming.request.conversation, self.audience)

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        try:
            incoming = to_incoming(turn_context.activity.serialize())
        except MalformedActivity:
            log.info("ignored a message without sender or conversation")
            return
        if incoming.request is None:
            return
        conversation = incoming.request.conversation

        async def send(reply: Reply) -> MessageRef | None:
            activity = render.message(reply, audience=await self._audience(reply, incoming))
            sent = await turn_context.send_activity(Activity().deserialize(activity))
            return MessageRef(conversation, sent.id) if sent is not None and sent.id else None

        await self.dispatcher.deliver_async(await self._run(incoming), send)

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        # answered here, not in on_adaptive_card_invoke: botbuilder 4.17.1 serialises that answer twice (HTTP 500)
        activity = turn_context.activity
        try:
            incoming = to_incoming(activity.serialize())
        except MalformedActivity as e:
            return InvokeResponse(status=400, body={"statusCode": 400, "type": "application/vnd.microsoft.error",
                                                    "value": {"code": "BadRequest", "message": str(e)}})
        if incoming.view is not None and incoming.identity is not None:
            card = render.view_card(incoming.view, user_id=incoming.identity.user_id)
            return InvokeResponse(status=200, body=render.invoke_answer(card))
        if incoming.request is None:
            return InvokeResponse(status=501)
        conversation = incoming.request.conversation
        answers: list[InvokeResponse] = []

        async def replace_card(reply: Reply) -> MessageRef | None:
            # the invoke's own answer is the post: it replaces the pressed card, so work threads under that card
            if reply.severity is Severity.ERROR:
                # keep the card as it is and tell only the presser why
                answers.append(InvokeResponse(status=200, body=render.invoke_message(reply.plain_text())))
            else:
                card = render.card(reply, audience=await self._audience(reply, incoming))
                answers.append(InvokeResponse(status=200, body=render.invoke_answer(card)))
            card_id = activity.reply_to_id
            return MessageRef(conversation, card_id) if card_id else None

        await self.dispatcher.deliver_async(await self._run(incoming), replace_card)
        return answers[0]


@dataclass
class TeamsEndpoint:
    """The aiohttp handler: parse, authenticate (401 on any failure), run the turn, answer."""

    config: TeamsConfig
    adapter: CloudAdapter
    auth: BotFrameworkAuthentication
    bot: PvebotTeamsBot

    async def handle(self, request: web.Request) -> web.Response:
        if "application/json" not in request.headers.get("Content-Type", ""):
            return web.json_response({"error": "expected application/json"}, status=415)
        try:
            body = json.loads(await request.read())
            if not isinstance(body, dict) or not body.get("type"):
                raise ValueError("not an activity")
            activity = Activity().deserialize(body)
            # what the turn will read (translate works on this form), made once here where failing is a 400
            activity_json = activity.serialize()
        except Exception:
            return web.json_response({"error": "not a Bot Framework activity"}, status=400)
        try:
            result = await authenticate(self.auth, config=self.config, activity=activity,
                                        header=request.headers.get("Authorization"))
        except Unauthorized as e:
            log.info("refused a Teams request: %s", e)
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            # after the token: an unauthenticated caller learns nothing about what we would accept.
            # botbuilder would fail on these mid-turn (a serviceUrl that is no URL, a malformed refresh view)
            service_url_of(activity_json)
            to_incoming(activity_json)
        except MalformedActivity as e:
            log.info("refused a Teams activity: %s", e)
            return web.json_response({"error": "malformed activity"}, status=400)
        try:
            invoke = await self.adapter.process_activity(result, activity, self.bot.on_turn)
        except Exception:
            log.exception("Teams turn failed")
            return web.json_response({"error": "internal error"}, status=500)
        if invoke is None:
            return web.Response(status=200)
        payload = invoke.body if isinstance(invoke.body, (dict, list)) or invoke.body is None \
            else _serialize(invoke.body)
        return web.json_response(payload, status=invoke.status or 200)


def mount(web_app: web.Application, endpoint: TeamsEndpoint) -> None:
    """Serve ``POST /api/messages`` with ``endpoint`` (built by the composition root)."""
    config = endpoint.config
    if not config.auth_enabled:
        for line in ("*" * 72,
                     "TEAMS AUTHENTICATION IS OFF: no MICROSOFT_APP_ID, PVEBOT_TEAMS_EMULATOR is set.",
                     "Anyone who can reach /api/messages can act as any Teams user. Emulator use only.",
                     "*" * 72):
            log.warning(line)
    web_app.router.add_post("/api/messages", endpoint.handle)

    async def on_startup(_: web.Application) -> None:
        await prefetch_openid_metadata(config)

    web_app.on_startup.append(on_startup)
