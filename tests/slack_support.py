"""A local fake of Slack for tests: the Web API (recording and validating), response_urls, Socket Mode,
and a client that sends signed slash commands, button clicks and events to ``pvebot serve``.

The fake runs its own event loop in a thread, so the bot's synchronous notifier (worker
threads) and its asynchronous bolt client can both call it while a test awaits.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from tests.support import SLACK_IDS

BOT_TOKEN = "xoxb-test-0000-secret-bot-token"
APP_TOKEN = "xapp-test-0000-secret-app-token"
SIGNING_SECRET = "test-signing-secret-8f3a1c"
BOT_USER_ID = "U0PVEBOT"
CHANNEL = "C0OPS"

LIMITS = {"blocks": 50, "section": 3000, "header": 150, "field": 2000, "fields": 10, "button_text": 75,
          "button_value": 2000, "id": 255, "actions": 25, "context": 10}


def block_problems(blocks: Any) -> list[str]:
    """What Slack would refuse in ``blocks``: slack_sdk's models with validation, plus documented limits."""
    if not isinstance(blocks, list) or not blocks:
        return ["blocks is not a non-empty list"]
    problems = [] if len(blocks) <= LIMITS["blocks"] else [f"{len(blocks)} blocks > 50"]
    for i, sent in enumerate(blocks):
        try:
            parsed = Block.parse(sent)
            again = parsed.to_dict() if parsed is not None else None
        except Exception as e:  # SlackObjectFormationError and friends
            problems.append(f"block {i}: {type(e).__name__}: {e}")
            continue
        if again != sent:  # unknown keys are dropped silently by the models
            problems.append(f"block {i}: model round trip differs: {again!r} != {sent!r}")
        problems += [f"block {i}: {p}" for p in _limits(sent)]
    return problems


def _limits(block: dict[str, Any]) -> list[str]:
    out = []
    for key in ("block_id",):
        if len(str(block.get(key, ""))) > LIMITS["id"]:
            out.append("block_id too long")
    kind = block.get("type")
    if kind == "header" and len(block["text"]["text"]) > LIMITS["header"]:
        out.append("header text > 150")
    if kind == "section":
        if "text" in block and len(block["text"]["text"]) > LIMITS["section"]:
            out.append("section text > 3000")
        fields = block.get("fields") or []
        if len(fields) > LIMITS["fields"] or any(len(f["text"]) > LIMITS["field"] for f in fields):
            out.append("section fields over limits")
    if kind == "context" and len(block.get("elements") or []) > LIMITS["context"]:
        out.append("context > 10 elements")
    if kind == "actions":
        elements = block.get("elements") or []
        if len(elements) > LIMITS["actions"]:
            out.append("actions > 25 elements")
        for e in elements:
            if len(e["text"]["text"]) > LIMITS["button_text"] or len(e.get("value", "")) > LIMITS["button_value"]:
                out.append("button text/value too long")
            if len(e.get("action_id", "")) > LIMITS["id"]:
                out.append("action_id too long")
    return out


def view_problems(view: Any) -> list[str]:
    """What Slack would refuse in a ``views.open`` modal: slack_sdk's View model, then what pvebot relies on.

    The model checks the lengths (title, submit and close at most 24 characters, private_metadata 3,000,
    callback_id 255, 1 to 100 blocks); each input block needs a label and an element with an action id,
    a plain_text_input at most 3,000 characters long.
    """
    if not isinstance(view, dict):
        return ["view is not an object"]
    problems = []
    try:
        parsed = View(**view)
        parsed.validate_json()
        again = parsed.to_dict()
    except Exception as e:  # SlackObjectFormationError and friends
        return [f"view: {type(e).__name__}: {e}"]
    if again != view:
        problems.append(f"view: model round trip differs: {again!r} != {view!r}")
    if view.get("type") != "modal":
        problems.append("view type is not modal")
    for key in ("title", "submit", "close"):
        if not isinstance(view.get(key), dict) or view[key].get("type") != "plain_text":
            problems.append(f"view {key} is not plain_text")
    if not view.get("callback_id"):
        problems.append("view without callback_id")
    for block in view.get("blocks") or []:
        if block.get("type") != "input":
            continue
        element = block.get("element") or {}
        if not block.get("label") or not element.get("action_id"):
            problems.append("input block without label or element action_id")
        if element.get("type") == "plain_text_input" and not 0 < element.get("max_length", 3000) <= 3000:
            problems.append("plain_text_input max_length out of 1..3000")
    problems += block_problems(view.get("blocks"))
    return problems


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.monotonic)
    status: int = 200


class FakeSlack:
    """Slack's Web API on loopback: answers like Slack, records every call, refuses invalid blocks."""

    def __init__(self, *, emails: dict[str, tuple[str, str]] | None = None, validate: bool = True) -> None:
        # a benchmark turns validation off: it measures the bot, not this fake
        self.validate = validate
        # Slack user id -> (team id, email) for users.info
        self.emails = dict(emails or {})
        self.calls: list[ApiCall] = []
        self.violations: list[str] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        # direct message channels conversations.open has opened
        self.opened: set[str] = set()
        # channels archived since: chat.postMessage there answers is_archived, as Slack does
        self.archived: set[str] = set()
        self._faults: dict[str, list[tuple[int, dict[str, Any], dict[str, str]]]] = {}
        # (until, Retry-After, methods, seconds): a 429 storm, see storm(); until is None while it
        # waits for its first call
        self._storm: tuple[float | None, str, frozenset[str], float] = (0.0, "1", frozenset(), 0.0)
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-slack", daemon=True)
        self._runner: web.AppRunner | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, dict[str, Any]] = {}
        self._holds: dict[str, list[tuple[bool, asyncio.Event]]] = {}
        self._waiting: dict[str, int] = {}
        self.url = ""

    # ---- lifecycle ----

    def __enter__(self) -> FakeSlack:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{hook}", self._response_url)
        app.router.add_get("/link", self._socket)
        app.router.add_get("/stats", self._stats)
        app.router.add_post("/storm", self._storm_now)
        app.router.add_get("/record", self._record)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return self.url + "/api/"

    def response_url(self) -> str:
        return f"{self.url}/response/{uuid.uuid4().hex[:12]}"

    # ---- test controls ----

    def fail_next(self, method: str, *, status: int = 200, body: dict[str, Any] | None = None,
                  headers: dict[str, str] | None = None) -> None:
        """The next call of ``method`` gets this answer (e.g. 429 with Retry-After, or not_in_channel)."""
        with self._lock:
            self._faults.setdefault(method, []).append((status, body or {"ok": False, "error": "ratelimited"},
                                                        headers or {}))

    def hold(self, method: str, *, accepted: bool) -> asyncio.Event:
        """Keep the next call of ``method`` waiting for its answer until the returned event is set.

        ``accepted``: Slack has taken the message (it shows in the channel) and only the answer is
        late; otherwise the call is held before Slack takes it, and a caller gone by the time it is
        released never had it taken (the connection broke first).
        """
        released = asyncio.Event()
        with self._lock:
            self._holds.setdefault(method, []).append((accepted, released))
        return released

    def release(self, released: asyncio.Event) -> None:
        self._loop.call_soon_threadsafe(released.set)

    def held(self, method: str) -> int:
        """How many calls of ``method`` are waiting in a hold now."""
        with self._lock:
            return self._waiting.get(method, 0)

    def rate_limit_next(self, method: str, *, retry_after: int = 1) -> None:
        self.fail_next(method, status=429, headers={"Retry-After": str(retry_after)})

    def storm(self, seconds: float, *, retry_after: float = 1,
              methods: tuple[str, ...] = ("chat.postMessage", "chat.update", "chat.postEphemeral"),
              from_first_call: bool = False) -> None:
        """Answer every call of ``methods`` with 429 for ``seconds`` (tests shrink Retry-After).

        The storm starts now, or with ``from_first_call`` at the first call it hits: a test that
        must meet it then does not depend on how fast a loaded machine gets its first post out.
        """
        with self._lock:
            until = None if from_first_call else time.monotonic() + seconds
            self._storm = (until, f"{retry_after:g}", frozenset(methods), seconds)

    @property
    def storm_ends(self) -> float:
        """When the storm ended or ends (monotonic seconds); 0 when none has started."""
        with self._lock:
            return self._storm[0] or 0.0

    def of(self, *methods: str) -> list[ApiCall]:
        with self._lock:
            return [c for c in self.calls if c.method in methods]

    async def wait_for(self, predicate: Callable[[FakeSlack], Any], *, timeout: float = 10.0) -> Any:
        """Poll until ``predicate`` returns something truthy; fail the test after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; calls so far: {[c.method for c in self.calls]}")
            await asyncio.sleep(0.02)

    # ---- the Web API ----

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        for key in ("blocks", "files"):
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else args.get("token")
        with self._lock:
            holds = self._holds.get(method)
            hold = holds.pop(0) if holds else None
        if hold is not None:
            accepted, released = hold
            answer = self._answer(method, args) if accepted else None
            with self._lock:
                if accepted:
                    self.calls.append(ApiCall(method, args, token))
                self._waiting[method] = self._waiting.get(method, 0) + 1
            try:
                await released.wait()
            finally:
                with self._lock:
                    self._waiting[method] -= 1
            if answer is None and (request.transport is None or request.transport.is_closing()):
                raise ConnectionResetError("the caller went before Slack took the message")
            if answer is not None:
                return web.json_response(answer)
        with self._lock:
            self.calls.append(ApiCall(method, args, token))
            fault = self._faults.get(method, [])
            popped = fault.pop(0) if fault else None
            status, body, headers = popped or (200, None, {})
            until, wait, stormed, seconds = self._storm
            if popped is None and method in stormed and until is None:
                until = time.monotonic() + seconds
                self._storm = (until, wait, stormed, seconds)
            if popped is None and method in stormed and until is not None and time.monotonic() < until:
                status, body, headers = 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": wait}
            self.calls[-1].status = status
        if body is not None:
            return web.json_response(body, status=status, headers=headers)
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "views.open" and self.validate:
            problems = view_problems(args.get("view"))
            if not args.get("trigger_id"):
                problems.append("views.open without trigger_id")
            if problems:
                with self._lock:
                    self.violations.extend(f"{method}: {p}" for p in problems)
                return web.json_response({"ok": False, "error": "invalid_arguments", "errors": problems[:5]})
        if "blocks" in args and self.validate:
            problems = block_problems(args["blocks"])
            if problems:
                with self._lock:
                    self.violations.extend(f"{method}: {p}" for p in problems)
                return web.json_response({"ok": False, "error": "invalid_blocks", "errors": problems[:5]})
        return web.json_response(self._answer(method, args))

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "user": "pvebot",
                    "team_id": "T0ACME", "user_id": BOT_USER_ID, "bot_id": "B0PVEBOT"}
        if method == "chat.postMessage":
            if args.get("channel") in self.archived:
                return {"ok": False, "error": "is_archived"}
            ts = f"1700000000.{next(self._ts):06d}"
            with self._lock:
                self.messages[(args["channel"], ts)] = {**args, "ts": ts}
            return {"ok": True, "channel": args["channel"], "ts": ts,
                    "message": {"type": "message", "ts": ts, "text": args.get("text", "")}}
        if method == "chat.update":
            with self._lock:
                key = (args["channel"], args["ts"])
                if key not in self.messages:
                    return {"ok": False, "error": "message_not_found"}
                self.messages[key] = {**self.messages[key], **args}
            return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text", "")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"}
        if method == "users.info":
            found = self.emails.get(args.get("user", ""))
            if found is None:
                return {"ok": False, "error": "user_not_found"}
            team, email = found
            return {"ok": True, "user": {"id": args["user"], "team_id": team, "is_bot": False,
                                         "profile": {"email": email, "real_name": email.split("@")[0]}}}
        if method == "conversations.open":
            return self._open(args)
        if method == "files.getUploadURLExternal":
            file_id = f"F{next(self._ts):08d}"
            return {"ok": True, "upload_url": f"{self.url}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title", "")} for f in args["files"]]}
        if method == "views.open":
            view_id = f"V{next(self._ts):08d}"
            return {"ok": True, "view": {**args["view"], "id": view_id, "team_id": "T0ACME", "hash": "h" + view_id,
                                         "state": {"values": {}}}}
        if method == "apps.connections.open":
            return {"ok": True, "url": self.url.replace("http://", "ws://") + "/link"}
        return {"ok": False, "error": "unknown_method"}

    def _open(self, args: dict[str, Any]) -> dict[str, Any]:
        """``conversations.open`` as Slack documents it: ``users`` (1–8 ids, comma-separated) or ``channel``;
        the same DM again for the same person (``already_open`` with ``return_im``)."""
        if args.get("channel"):
            return {"ok": True, "channel": {"id": args["channel"]}}
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if not users:
            return {"ok": False, "error": "users_list_not_supplied"}
        if len(users) > 8:
            return {"ok": False, "error": "too_many_users"}
        if any(u not in self.emails and not re.fullmatch(r"[UW][A-Z0-9]{2,}", u) for u in users):
            return {"ok": False, "error": "user_not_found"}
        channel = ("D" if len(users) == 1 else "G") + "".join(sorted(users))[:20]
        with self._lock:
            again = channel in self.opened
            self.opened.add(channel)
        answer: dict[str, Any] = {"ok": True, "channel": {"id": channel}}
        if again:
            answer.update(no_op=True, already_open=True)
        return answer

    async def _upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        with self._lock:
            self.calls.append(ApiCall("upload", {"file_id": request.match_info["file_id"], "bytes": data}, None))
        return web.Response(text="OK - uploaded")

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.calls.append(ApiCall("response_url", body, None))
        problems = block_problems(body["blocks"]) if "blocks" in body else []
        if problems:
            with self._lock:
                self.violations.extend(f"response_url: {p}" for p in problems)
            return web.Response(status=400, text="invalid_blocks")
        return web.Response(text="ok")

    async def _stats(self, request: web.Request) -> web.Response:
        """Calls per method, for a benchmark in another process that waits for the bot to catch up."""
        with self._lock:
            counts: dict[str, int] = {}
            for call in self.calls:
                counts[call.method] = counts.get(call.method, 0) + 1
        return web.json_response(counts)

    async def _storm_now(self, request: web.Request) -> web.Response:
        """``POST /storm?seconds=…&retry_after=…``: :meth:`storm`, for a benchmark in another process."""
        self.storm(float(request.query["seconds"]), retry_after=float(request.query.get("retry_after", "1")))
        return web.json_response({"ok": True})

    async def _record(self, request: web.Request) -> web.Response:
        """Every chat call (method, channel, time, status, text) and every message's current state."""
        with self._lock:
            calls = [{"method": c.method, "channel": c.args.get("channel"), "at": c.at, "status": c.status,
                      "text": str(c.args.get("text", "")), "ts": c.args.get("ts"),
                      "blocks": json.dumps(c.args.get("blocks", []), ensure_ascii=False)}
                     for c in self.calls if c.method.startswith("chat.") or c.method == "response_url"]
            messages = [{**{k: v for k, v in m.items() if k in ("channel", "ts", "thread_ts", "text")},
                         "blocks": json.dumps(m.get("blocks", []), ensure_ascii=False)}
                        for m in self.messages.values()]
        return web.json_response({"calls": calls, "messages": messages})

    # ---- Socket Mode ----

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0PVE"}})
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(message.data)
                if "envelope_id" in data:
                    with self._lock:
                        self._acks[data["envelope_id"]] = data
        return ws

    def connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    async def _send_envelope(self, envelope: dict[str, Any]) -> None:
        for ws in self._sockets:
            if not ws.closed:
                await ws.send_json(envelope)
                return
        raise AssertionError("no Socket Mode connection")

    def send_envelope(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """Deliver one Socket Mode envelope; returns its id (see :meth:`acked`)."""
        envelope_id = uuid.uuid4().hex
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": True,
                    "retry_attempt": retry_attempt, "retry_reason": ""}
        asyncio.run_coroutine_threadsafe(self._send_envelope(envelope), self._loop).result(timeout=5)
        return envelope_id

    def acked(self, envelope_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._acks.get(envelope_id)


# ---- the client side: signed requests as Slack sends them ---------------------------------


def sign(body: str, *, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


@dataclass
class Sent:
    status: int
    body: str
    elapsed: float


class SlackSender:
    """Sends what Slack would send to ``pvebot serve``: slash commands, clicks and events, signed."""

    def __init__(self, session: aiohttp.ClientSession, *, bot_url: str, fake: FakeSlack) -> None:
        self.session, self.bot_url, self.fake = session, bot_url, fake

    async def post(self, body: str, *, content_type: str, timestamp: int | None = None,
                   signature: str | None = None, headers: dict[str, str] | None = None) -> Sent:
        ts = int(time.time()) if timestamp is None else timestamp
        all_headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(ts),
                       "X-Slack-Signature": signature or sign(body, timestamp=ts), **(headers or {})}
        start = time.perf_counter()
        async with self.session.post(self.bot_url + "/slack/events", data=body.encode(),
                                     headers=all_headers) as response:
            text = await response.text()
            return Sent(response.status, text, time.perf_counter() - start)

    async def command(self, text: str, *, as_: str, channel: str = CHANNEL, command: str = "/pve",
                      **overrides: Any) -> Sent:
        team, user = SLACK_IDS.get(as_, ("T0ACME", as_))
        form = {"token": "legacy", "team_id": team, "team_domain": "acme", "channel_id": channel,
                "channel_name": "ops", "user_id": user, "user_name": user.lower(), "command": command,
                "text": text, "api_app_id": "A0PVE", "is_enterprise_install": "false",
                "response_url": self.fake.response_url(), "trigger_id": f"{uuid.uuid4().int % 10**10}.1.abc"}
        form.update({k: v for k, v in overrides.items() if k not in ("timestamp", "signature", "headers")})
        return await self.post(urllib.parse.urlencode(form), content_type="application/x-www-form-urlencoded",
                               timestamp=overrides.get("timestamp"), signature=overrides.get("signature"))

    async def click(self, message: dict[str, Any], label: str, *, as_: str, action_ts: str | None = None,
                    trigger_id: str | None = None) -> Sent:
        """Press the button labelled ``label`` on a message the bot posted (as recorded by the fake)."""
        team, user = SLACK_IDS.get(as_, ("T0ACME", as_))
        block, button = next((b, e) for b in message["blocks"] if b["type"] == "actions"
                             for e in b["elements"] if e["text"]["text"] == label)
        payload = {
            "type": "block_actions", "api_app_id": "A0PVE", "token": "legacy",
            "user": {"id": user, "username": user.lower(), "team_id": team},
            "team": {"id": team, "domain": "acme"},
            "container": {"type": "message", "message_ts": message["ts"], "channel_id": message["channel"],
                          "is_ephemeral": False},
            "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**10}.1.def",
            "channel": {"id": message["channel"], "name": "ops"},
            "message": {"type": "message", "ts": message["ts"], "text": message.get("text", ""),
                        "blocks": message["blocks"], "bot_id": "B0PVEBOT",
                        **({"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {})},
            "response_url": self.fake.response_url(),
            "actions": [{"type": "button", "action_id": button["action_id"], "block_id": block.get("block_id", "b"),
                         "text": button["text"], "value": button["value"],
                         "action_ts": action_ts or f"{time.time():.6f}"}],
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return await self.post(body, content_type="application/x-www-form-urlencoded")

    async def submit(self, opened: dict[str, Any], text: str | None, *, as_: str) -> Sent:
        """Press Submit on a modal the bot opened (``opened``: the ``views.open`` answer's view), having
        typed ``text`` into its one text input (None: left empty, which Slack sends as null)."""
        team, user = SLACK_IDS.get(as_, ("T0ACME", as_))
        [block] = [b for b in opened["blocks"] if b["type"] == "input"]
        typed = {block["block_id"]: {block["element"]["action_id"]: {"type": "plain_text_input", "value": text}}}
        view = {**opened, "id": opened.get("id") or "V" + uuid.uuid4().hex[:10].upper(),
                "state": {"values": typed}}
        payload = {
            "type": "view_submission", "api_app_id": "A0PVE", "token": "legacy",
            "team": {"id": team, "domain": "acme"},
            "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": team},
            "view": view, "response_urls": [], "is_enterprise_install": False,
            "trigger_id": f"{uuid.uuid4().int % 10**10}.1.ghi",
        }
        body = urllib.parse.urlencode({"payload": json.dumps(payload)})
        return await self.post(body, content_type="application/x-www-form-urlencoded")

    async def mention(self, text: str, *, as_: str, event_id: str, channel: str = CHANNEL,
                      retry_num: int | None = None) -> Sent:
        team, user = SLACK_IDS.get(as_, ("T0ACME", as_))
        ts = f"{time.time():.6f}"
        envelope = {"token": "legacy", "team_id": team, "api_app_id": "A0PVE", "type": "event_callback",
                    "event_id": event_id, "event_time": int(time.time()), "authed_users": [BOT_USER_ID],
                    "event": {"type": "app_mention", "user": user, "text": f"<@{BOT_USER_ID}> {text}", "ts": ts,
                              "channel": channel, "event_ts": ts, "team": team}}
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else {}
        return await self.post(json.dumps(envelope), content_type="application/json", headers=headers)


@asynccontextmanager
async def serving(web_app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp application on a free loopback port; yields its base URL."""
    runner = web.AppRunner(web_app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def slack_env(fake: FakeSlack, *, socket_mode: bool = False) -> dict[str, str]:
    env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "PVEBOT_SLACK_API_URL": fake.api_url}
    if socket_mode:
        env["SLACK_APP_TOKEN"] = APP_TOKEN
    else:
        env["SLACK_SIGNING_SECRET"] = SIGNING_SECRET
    return env


def posted(fake: FakeSlack, *, channel: str = CHANNEL, thread: str | None = None) -> list[dict[str, Any]]:
    """Current state of the messages posted in ``channel`` (top level, or in ``thread``), oldest first."""
    with fake._lock:
        found = [m for (c, _), m in fake.messages.items() if c == channel and m.get("thread_ts") == thread]
    return sorted(found, key=lambda m: m["ts"])


def all_text(message: dict[str, Any]) -> str:
    """Every text of a message's blocks, for assertions."""
    return json.dumps(message.get("blocks", []), ensure_ascii=False)


# ---- pytest fixtures (import them into a test module to use them) ---------------------------


@dataclass
class SlackBot:
    """``pvebot serve`` with Slack on loopback, its fake Slack, and a sender of signed requests."""

    app: Any
    fake: FakeSlack
    slack: SlackSender
    hypervisors: Any


def lab_hypervisors() -> Any:
    from tests.fakes import FakeHypervisors

    hv = FakeHypervisors()
    lab = hv.cluster("lab")
    lab.add(101, "web-01", pool="acme")
    lab.add(102, "db-01", pool="acme", status="stopped")
    lab.add(201, "gx-01", pool="globex")
    lab.add(9000, "debian-12", pool=None, template=True)
    return hv


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def slack_bot(tmp_path: Path, fake_slack: FakeSlack) -> AsyncIterator[SlackBot]:
    async with running_slack_bot(tmp_path, fake_slack) as bot:
        yield bot


@asynccontextmanager
async def running_slack_bot(tmp_path: Path, fake_slack: FakeSlack, *, hypervisors: Any = None,
                            **build: Any) -> AsyncIterator[SlackBot]:
    """``pvebot serve`` on loopback over a fresh database; ``build`` goes to ``build_app`` (e.g. slack_pace)."""
    from adapters.queue import EmbeddedQueue
    from bot.bootstrap import build_app, build_server
    from bot.config import Settings
    from tests.fakes import FakeClock
    from tests.support import make_storage, provision

    storage = make_storage(f"sqlite:///{tmp_path / 'pvebot.db'}", clock=FakeClock())
    provision(storage)
    settings = Settings.from_mapping({**dict(storage.settings.env), **slack_env(fake_slack),
                                      "PVEBOT_JOB_TIMEOUT": "60"})
    hv = hypervisors or lab_hypervisors()
    app = build_app(settings, storage=storage, hypervisors=hv, queue=EmbeddedQueue(workers=2),
                    progress_interval=0.0, poll_interval=0.01, **build)
    try:
        async with serving(build_server(app)) as url, aiohttp.ClientSession() as session:
            yield SlackBot(app=app, fake=fake_slack, slack=SlackSender(session, bot_url=url, fake=fake_slack),
                           hypervisors=hv)
    finally:
        app.close()
        storage.engine.dispose()
