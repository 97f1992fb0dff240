"""The Slack face of pvebot: a bolt ``AsyncApp`` for slash commands, mentions, buttons and their modals.

Every listener acknowledges first (bolt answers Slack's HTTP request as soon as ``ack()``
runs, ``process_before_response=False``) and only then dispatches and hands the answer,
with how to post it here, to the dispatcher's one delivery path (which starts the jobs).

HTTP requests pass our own edge before bolt sees them (:func:`mount`): the signature is checked
first, on the raw bytes (unsigned, forged or older than five minutes: 401), then the body's shape
(signed but not what Slack sends: 400), each refusal one short log line. bolt's parsing assumes
Slack's shapes and would answer anything else 500 with a traceback, before its own signature check.

HTTP mode mounts ``POST /slack/events`` on the aiohttp application; Socket Mode (an app
token) opens a websocket from inside the same process instead.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from typing import Any, Protocol

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import translate
from adapters.slack.notifier import api_url
from adapters.slack.outbound import SlackPoster, is_private
from adapters.slack.pacing import SlackOutbox
from adapters.slack.render import ACTION_PREFIX, ask_modal, escape, render
from core.chat import Answer, CommandRequest, MessageRef, Reply

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
# work waits for QUIET seconds without a new request, MAX_DEFER at most (see SlackHandlers._after_acks)
QUIET, MAX_DEFER = 0.01, 2.0
# Slack's own replay window, which bolt and slack_sdk also use
MAX_AGE = 5 * 60


class CommandDispatcher(Protocol):
    """What the adapter needs of ``bot.dispatch.Dispatcher``."""

    async def handle_async(self, request: CommandRequest) -> Answer: ...

    async def deliver_async(
        self, answer: Answer, post: Callable[[Reply], Awaitable[MessageRef | None]]
    ) -> MessageRef | None: ...


class RecentKeys:
    """Keys seen in the last ``ttl`` seconds: Slack's retries and double deliveries run once."""

    def __init__(self, *, ttl: float = 900.0, limit: int = 20000) -> None:
        self.ttl, self.limit = ttl, limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first(self, key: str) -> bool:
        """True the first time ``key`` is offered within ``ttl``."""
        now = time.monotonic()
        while self._seen and (len(self._seen) > self.limit or next(iter(self._seen.values())) < now - self.ttl):
            self._seen.popitem(last=False)
        if key in self._seen:
            return False
        self._seen[key] = now
        return True


class SlackHandlers:
    """The listeners; each acknowledges, then works, and never lets an exception reach bolt."""

    def __init__(self, dispatcher: CommandDispatcher, poster: SlackPoster, *, max_in_flight: int = 4) -> None:
        self.dispatcher = dispatcher
        self.poster = poster
        self.seen = RecentKeys()
        # work after the ack shares this process (and its GIL) with the next acks: a few commands
        # at a time keep acks fast under a burst, the rest wait their turn in memory
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._last_arrival = 0.0

    async def _after_acks(self) -> None:
        """Acks have Slack's 3-second deadline, replies do not: let a burst be acknowledged first."""
        deadline = time.monotonic() + MAX_DEFER
        while time.monotonic() - self._last_arrival < QUIET and time.monotonic() < deadline:
            await asyncio.sleep(QUIET)

    async def on_command(self, ack: Callable[[], Awaitable[None]], body: dict[str, Any]) -> None:
        self._last_arrival = time.monotonic()
        await ack()
        try:
            incoming = translate.slash_command(body)
        except translate.MalformedPayload as e:
            # HTTP requests were checked at the edge; this is Socket Mode, where Slack's envelope is all we get
            log.info("ignored a Slack command: %s", e)
            return
        await self._guarded(self._run, incoming)

    async def on_mention(self, body: dict[str, Any], context: dict[str, Any], request: Any) -> None:
        # bolt has acknowledged the event already; a retry (X-Slack-Retry-Num) repeats the event_id
        event_id = str(body.get("event_id") or "")
        if event_id and not self.seen.first("evt:" + event_id):
            log.info("duplicate delivery of event %s (retry %s) ignored", event_id,
                     request.headers.get("x-slack-retry-num", ["0"])[0] if request is not None else "?")
            return
        try:
            incoming = translate.app_mention(body, bot_user_id=context.get("bot_user_id"))
        except translate.MalformedPayload as e:
            log.info("ignored a Slack mention: %s", e)
            return
        if incoming is not None:
            await self._guarded(self._run, incoming)

    async def on_button(self, ack: Callable[[], Awaitable[None]], body: dict[str, Any]) -> None:
        self._last_arrival = time.monotonic()
        await ack()
        press = self._first_time(translate.button_press, body, what="button press", seen_as="btn")
        if press is None:
            return
        if press.ask is not None:
            # at once, not after the other acks: the press's trigger_id opens a modal for 3 seconds only
            await self._ask(press, press.ask)
            return
        await self._guarded(self._press, press)

    async def _ask(self, press: translate.ButtonPress, ask: str) -> None:
        """Open the modal that asks for the text; if Slack will not, say what to type instead."""
        view = ask_modal(label=press.label or press.request.text.split()[0], ask=ask,
                         metadata=translate.ask_metadata(press))
        try:
            await self.poster.client.views_open(trigger_id=press.trigger_id, view=view)
            return
        except SlackApiError as e:
            why = str(e.response.get("error") or "") if e.response is not None else "no answer"
        except Exception as e:  # the host would be in str(e): name the kind only
            why = type(e).__name__
        log.info("could not open the modal of a button (%s)", why)
        label = press.label or "the button"
        told = Reply.error(f"Slack did not open the form for your text. Type `{press.request.text} <reason>` "
                           f"instead, or press {label} again.")
        await self._guarded(partial(self._tell, told), press)

    async def _tell(self, reply: Reply, press: translate.ButtonPress) -> None:
        await self.poster.deliver(press, reply)

    async def on_view(self, ack: Callable[[], Awaitable[None]], body: dict[str, Any]) -> None:
        """Submit on an asking button's modal: the button's command, with the text, as if it were pressed."""
        self._last_arrival = time.monotonic()
        await ack()  # closes the modal; what the command answers goes where the press's answer would
        press = self._first_time(translate.view_submission, body, what="view submission", seen_as="view")
        if press is not None:
            await self._guarded(self._press, press)

    def _first_time(self, parse: Callable[[dict[str, Any]], translate.ButtonPress | None], body: dict[str, Any],
                    *, what: str, seen_as: str) -> translate.ButtonPress | None:
        """The press (or submission) in ``body`` to act on: None if it is malformed, not ours or a re-delivery."""
        try:
            press = parse(body)
        except translate.MalformedPayload as e:
            log.info("ignored a Slack %s: %s", what, e)
            return None
        if press is None or not self.seen.first(f"{seen_as}:{press.dedupe_key}"):
            return None
        return press

    async def _guarded(self, work: Callable[[Any], Awaitable[None]], incoming: translate.Incoming) -> None:
        try:
            async with self._in_flight:
                await self._after_acks()
                await work(incoming)
        except Exception:
            log.exception("could not answer a Slack request")

    async def _run(self, incoming: translate.Incoming) -> None:
        answer = await self.dispatcher.handle_async(incoming.request)
        await self.dispatcher.deliver_async(answer, partial(self.poster.deliver, incoming))

    async def _press(self, press: translate.ButtonPress) -> None:
        if press.kind == "run":
            await self._run(press)
            return
        answer = await self.dispatcher.handle_async(press.request)
        if is_private(answer.reply):
            how = self._post_private
        elif press.kind == "page":
            how = self._replace_clicked
        else:
            how = self._post_decision
        await self.dispatcher.deliver_async(answer, partial(how, press))

    async def _post_private(self, press: translate.ButtonPress, reply: Reply) -> MessageRef | None:
        """Only the presser sees it: there is no message to thread under."""
        await self.poster.deliver(press, reply)
        return None

    async def _post_decision(self, press: translate.ButtonPress, reply: Reply) -> MessageRef | None:
        """The decision's answer is the decided card: it takes the clicked card's place, nothing else is posted."""
        if press.is_ephemeral or not press.message_ts:
            if press.response_url:
                await self.poster.replace(press.response_url, render(reply))
                return None
            return await self.poster.deliver(press, reply)
        rendered = render(reply)
        message = MessageRef(conversation=press.request.conversation, message_id=press.message_ts)
        await self.poster.update(message, rendered.blocks, rendered.text)
        return message

    async def _replace_clicked(self, press: translate.ButtonPress, reply: Reply) -> MessageRef | None:
        """Next/previous page: the list message itself changes."""
        user = press.request.identity.user_id
        rendered = render(reply, caption=f"<@{user}> `{escape(press.request.text)}`")
        if press.is_ephemeral or not press.message_ts:
            if press.response_url:
                await self.poster.replace(press.response_url, rendered)
            return None
        message = MessageRef(conversation=press.request.conversation, message_id=press.message_ts)
        await self.poster.update(message, rendered.blocks, rendered.text)
        return message


def build_bolt_app(
    *, dispatcher: CommandDispatcher, bot_token: str, signing_secret: str | None, outbox: SlackOutbox,
    base_url: str | None = None, max_in_flight: int = 4,
) -> AsyncApp:
    """The bolt app with pvebot's listeners; ``signing_secret`` may be None in Socket Mode only.

    Posts, ephemerals and edits go through ``outbox``, the one the job workers' notifier uses,
    so that answers and job messages share each channel's pace.
    """
    bolt = AsyncApp(
        name="pvebot",
        token=bot_token,
        signing_secret=signing_secret or "",
        process_before_response=False,
        logger=logging.getLogger("pvebot.slack.bolt"),
    )
    # bolt builds its client from the token (passing our own makes it warn when SLACK_BOT_TOKEN is
    # also in the environment, which it reads itself): point that client at our base URL
    client: AsyncWebClient = bolt.client
    client.base_url = api_url(base_url)
    client.timeout = 15
    client.retry_handlers = [AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)]
    handlers = SlackHandlers(dispatcher, SlackPoster(client, outbox), max_in_flight=max_in_flight)
    # any command name: a workspace may install the app as /proxmox instead of /pve
    bolt.command(re.compile(r"^/.+"))(handlers.on_command)
    bolt.event("app_mention")(handlers.on_mention)
    bolt.action(re.compile("^" + re.escape(ACTION_PREFIX)))(handlers.on_button)
    # a string constraint is view_submission only: Cancel (view_closed, not asked for) sends nothing
    bolt.view(translate.ASK_CALLBACK)(handlers.on_view)
    bolt.error(_bolt_failed)
    return bolt


async def _bolt_failed(error: Exception) -> BoltResponse:
    # what gets here got past the edge's checks, so it is signed: a shape we did not foresee, most
    # likely. One line, no traceback (bolt's default), and 400, since the request is what failed.
    # Our listeners never raise (SlackHandlers._guarded logs their own failures in full).
    log.warning("bolt could not handle a signed Slack request (%s)", type(error).__name__)
    return BoltResponse(status=400, body="")


def unsigned(raw: bytes, headers: Mapping[str, str], *, secret: str, now: float) -> str | None:
    """Why a request is not Slack's (a few safe words), or None when it is signed, and recently.

    Slack signs ``v0:{timestamp}:{raw body}`` with HMAC-SHA256. This runs before anything parses
    the body, over its bytes as they came, so that no body shape can fail before it.
    """
    timestamp = headers.get("X-Slack-Request-Timestamp") or ""
    signature = headers.get("X-Slack-Signature") or ""
    if not signature:
        return "no signature"
    # ASCII digits only: int() would take "²", " 1 " or "1_000", and hmac.compare_digest refuses non-ASCII text
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not signature.isascii():
        return "malformed signature headers"
    if abs(now - int(timestamp)) > MAX_AGE:
        return "stale timestamp"
    expected = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
    if not hmac.compare_digest("v0=" + expected, signature):
        return "bad signature"
    return None


def events_handler(bolt: AsyncApp, *, signing_secret: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``POST /slack/events``: signature, then shape, then bolt; 401 or 400 with one log line, never 500."""

    async def slack_events(request: web.Request) -> web.Response:
        raw = await request.read()
        why = unsigned(raw, request.headers, secret=signing_secret, now=time.time())
        if why is not None:
            log.info("refused a Slack request: %s", why)
            return web.json_response({"error": "invalid request signature"}, status=401)
        try:
            translate.check(translate.parse_body(raw, content_type=request.headers.get("Content-Type", "")))
        except translate.MalformedPayload as e:
            log.info("refused a signed Slack request: %s", e)
            return web.json_response({"error": "malformed request"}, status=400)
        # raw decodes: parse_body accepted it as UTF-8
        bolt_request = AsyncBoltRequest(body=raw.decode(), query=request.query_string,
                                        headers=request.headers)  # type: ignore[arg-type]
        try:
            response = await bolt.async_dispatch(bolt_request)
        except Exception as e:
            # bolt's request context is built outside its own error handling
            log.warning("bolt could not read a signed Slack request (%s)", type(e).__name__)
            return web.json_response({"error": "malformed request"}, status=400)
        return await to_aiohttp_response(response)

    return slack_events


async def _shared_session(bolt: AsyncApp) -> AsyncIterator[None]:
    # one connection pool for every Web API call instead of a new session per call
    session = aiohttp.ClientSession()
    bolt.client.session = session
    yield
    bolt.client.session = None
    await session.close()


def mount(
    web_app: web.Application, bolt: AsyncApp, *, signing_secret: str | None = None, app_token: str | None = None,
    path: str = EVENTS_PATH,
) -> None:
    """Serve ``bolt`` from ``web_app``.

    Args:
        web_app: the ``pvebot serve`` aiohttp application.
        bolt: from :func:`build_bolt_app`.
        signing_secret: HTTP mode: slash commands, interactivity and events all ``POST`` to ``path``,
            checked against this secret first (:func:`events_handler`).
        app_token: Socket Mode: connect to Slack when ``web_app`` starts, disconnect when it stops.
        path: where Slack posts in HTTP mode.
    """
    web_app.cleanup_ctx.append(lambda _: _shared_session(bolt))
    if signing_secret:
        web_app.router.add_post(path, events_handler(bolt, signing_secret=signing_secret))
    if app_token:
        web_app.cleanup_ctx.append(lambda _: _socket_mode(bolt, app_token))


async def _socket_mode(bolt: AsyncApp, app_token: str) -> AsyncIterator[None]:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    handler = AsyncSocketModeHandler(bolt, app_token)
    await handler.connect_async()
    log.info("connected to Slack in Socket Mode")
    yield
    await handler.close_async()
