"""Fuzzing the HTTP edges: Slack's ``POST /slack/events`` and Teams' ``POST /api/messages``.

Hypothesis sends request bodies and headers, signed and unsigned, over real HTTP on loopback to
``pvebot serve`` (fake Slack / fake Bot Framework behind it) and checks, for every one of them:

* never a 500, and never a log record with a traceback (``exc_info``);
* nothing runs unless the request is signed (Slack) or carries a valid token (Teams): the
  dispatcher is never called for anything else, and nothing is audited.

The server runs in its own thread and event loop, so that the (synchronous) examples can post to it.
Bounded: about 150 examples per endpoint, no deadline.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.chat import Answer, CommandRequest
from core.principal import Scope
from tests.slack_support import SIGNING_SECRET, FakeSlack, slack_env
from tests.teams_support import FakeBotFramework, card_action, message, teams_settings

EXAMPLES = 150
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


class CountingDispatcher:
    """The real dispatcher, counting what reaches it: the proof that an unsigned request ran nothing."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.requests: list[CommandRequest] = []

    async def handle_async(self, request: CommandRequest) -> Answer:
        self.requests.append(request)
        answer: Answer = await self.inner.handle_async(request)
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Served:
    """An aiohttp application on a loopback port, in a thread with its own event loop."""

    def __init__(self, web_app: Any) -> None:
        from aiohttp import web

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fuzzed-server", daemon=True)
        self._thread.start()
        self._runner = web.AppRunner(web_app)

        async def start() -> int:
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            return int(self._runner.addresses[0][1])

        self.port = asyncio.run_coroutine_threadsafe(start(), self._loop).result(timeout=30)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def _audited(app: Any) -> int:
    with app.deps.uow_factory(Scope.everything()) as uow:
        return len([e for e in uow.audit.query(limit=1000) if e.action == "command"])


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info]


def _wait(predicate: Any, *, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# ---- what gets sent --------------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# header values a client can send at all (http.client refuses CR/LF and non-latin-1)
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255, blacklist_characters="\x7f"), max_size=40)


def _mutate(base: dict[str, Any], draw: Any, keys: list[str]) -> dict[str, Any]:
    """A real-looking payload with some keys dropped or given a random JSON value."""
    body = json.loads(json.dumps(base))
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
        path = key.split(".")
        target = body
        for part in path[:-1]:
            target = target.setdefault(part, {}) if isinstance(target, dict) else {}
        if isinstance(target, dict):
            if draw(st.booleans()):
                target.pop(path[-1], None)
            else:
                target[path[-1]] = draw(JSON_VALUES)
    return body


SLASH = {"team_id": "T0ACME", "user_id": "U0BOB", "channel_id": "C0OPS", "command": "/pve", "text": "whoami",
         "trigger_id": "1.2.3", "response_url": "", "ssl_check": "1", "authorizations": "x", "type": "x"}
MENTION = {"type": "event_callback", "team_id": "T0ACME", "event_id": "Ev1",
           "event": {"type": "app_mention", "user": "U0BOB", "text": "<@U0PVEBOT> whoami", "ts": "1.2",
                     "channel": "C0OPS", "team": "T0ACME"}}
CLICK = {"type": "block_actions", "user": {"id": "U0BOB", "team_id": "T0ACME"}, "team": {"id": "T0ACME"},
         "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0OPS"}, "channel": {"id": "C0OPS"},
         "trigger_id": "1.2.3", "message": {"ts": "1.2", "blocks": []},
         "actions": [{"action_id": "pvebot:0", "value": "whoami", "action_ts": "1.3"}]}
SLACK_KEYS = ["type", "team_id", "event", "event.type", "event.user", "event.channel", "event.team", "event.text",
              "user", "user.id", "team", "team.id", "container", "container.channel_id", "channel", "actions",
              "message", "message.blocks", "authorizations", "enterprise", "view", "response_urls", "challenge"]


@st.composite
def slack_bodies(draw: Any) -> tuple[bytes, str]:
    kind = draw(st.sampled_from(["binary", "json", "form", "payload", "mention", "click", "truncated"]))
    json_type = "application/json"
    form_type = "application/x-www-form-urlencoded"
    if kind == "binary":
        return draw(st.binary(max_size=200)), draw(st.sampled_from([json_type, form_type, "text/plain"]))
    if kind == "json":
        return json.dumps(draw(JSON_VALUES)).encode(), draw(st.sampled_from([json_type, form_type]))
    if kind == "form":
        fields = {k: v for k, v in SLASH.items() if draw(st.booleans())}
        fields.update(draw(st.dictionaries(st.sampled_from(list(SLASH)), st.text(max_size=20), max_size=3)))
        return urllib.parse.urlencode(fields).encode(), draw(st.sampled_from([form_type, json_type]))
    if kind == "payload":
        payload = draw(st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=40)))
        return urllib.parse.urlencode({"payload": payload}).encode(), form_type
    if kind == "mention":
        return json.dumps(_mutate(MENTION, draw, SLACK_KEYS)).encode(), json_type
    if kind == "click":
        payload = json.dumps(_mutate(CLICK, draw, SLACK_KEYS))
        return urllib.parse.urlencode({"payload": payload}).encode(), form_type
    whole = json.dumps(MENTION).encode()
    return whole[: draw(st.integers(0, len(whole) - 1))], json_type


def _slack_signature(raw: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()


@st.composite
def slack_requests(draw: Any) -> tuple[bytes, dict[str, str], bool]:
    """(body, headers, signed): signed means a valid signature over a fresh timestamp."""
    raw, content_type = draw(slack_bodies())
    now = str(int(time.time()))
    how = draw(st.sampled_from(["signed", "signed", "signed", "none", "forged", "stale", "other secret",
                                "odd timestamp", "odd signature"]))
    headers = {"Content-Type": content_type}
    if how == "signed":
        headers |= {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": _slack_signature(raw, now)}
    elif how == "forged":
        headers |= {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=" + draw(st.text("0123456789abcdef",
                                                                                              max_size=64))}
    elif how == "stale":
        old = str(int(time.time()) - draw(st.integers(301, 10**6)))
        headers |= {"X-Slack-Request-Timestamp": old, "X-Slack-Signature": _slack_signature(raw, old)}
    elif how == "other secret":
        headers |= {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": _slack_signature(raw, now, "nope")}
    elif how == "odd timestamp":
        odd = draw(HEADER_TEXT)
        headers |= {"X-Slack-Request-Timestamp": odd, "X-Slack-Signature": _slack_signature(raw, odd)}
    elif how == "odd signature":
        headers |= {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": draw(HEADER_TEXT)}
    if draw(st.booleans()):
        headers["X-Slack-Retry-Num"] = draw(HEADER_TEXT)
    return raw, headers, how == "signed"


# ---- Slack ---------------------------------------------------------------------------------------------------


@contextmanager
def _slack_server(tmp_path: Path) -> Iterator[tuple[Served, Any, CountingDispatcher, FakeSlack]]:
    from adapters.queue import EmbeddedQueue
    from bot.bootstrap import build_app, build_server
    from bot.config import Settings
    from tests.slack_support import lab_hypervisors
    from tests.support import make_storage, provision

    with FakeSlack(validate=False) as fake:
        storage = make_storage(f"sqlite:///{tmp_path / 'pvebot.db'}")
        provision(storage)
        settings_ = Settings.from_mapping({**dict(storage.settings.env), **slack_env(fake),
                                           "PVEBOT_JOB_TIMEOUT": "60"})
        app = build_app(settings_, storage=storage, hypervisors=lab_hypervisors(), queue=EmbeddedQueue(workers=1),
                        progress_interval=0.0, poll_interval=0.01)
        counting = CountingDispatcher(app.dispatcher)
        app.dispatcher = counting
        served = Served(build_server(app))
        try:
            yield served, app, counting, fake
        finally:
            served.close()
            app.close()
            storage.engine.dispose()


def test_slack_edge_never_fails_and_runs_only_what_is_signed(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with _slack_server(tmp_path) as (served, app, counting, fake):
        signed_ok = 0

        @FUZZ
        @given(slack_requests())
        def one(request: tuple[bytes, dict[str, str], bool]) -> None:
            nonlocal signed_ok
            raw, headers, signed = request
            before = len(counting.requests)
            status = served.post("/slack/events", raw, headers)
            assert status != 500 and status < 500, (status, raw[:200], headers)
            if not signed:
                assert status == 401, (status, raw[:200], headers)
                assert len(counting.requests) == before
            elif status < 300:
                signed_ok += 1
            assert _tracebacks(caplog) == []

        one()
        # a last signed command, then its reply: everything acknowledged before it has been handled
        now = str(int(time.time()))
        last = urllib.parse.urlencode({**{k: SLASH[k] for k in ("team_id", "user_id", "channel_id", "command")},
                                       "text": "whoami", "trigger_id": "last"}).encode()
        assert served.post("/slack/events", last, {"Content-Type": "application/x-www-form-urlencoded",
                                                   "X-Slack-Request-Timestamp": now,
                                                   "X-Slack-Signature": _slack_signature(last, now)}) == 200
        _wait(lambda: any(r.request_id.startswith("slack-cmd-") and r.text == "whoami"
                          and r.conversation.channel == "C0OPS" for r in counting.requests[-1:]), what="the last one")
        assert len(counting.requests) <= signed_ok + 1
        assert _audited(app) <= signed_ok + 1
        assert _tracebacks(caplog) == []


# ---- Teams ---------------------------------------------------------------------------------------------------

_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NOT_URLS = st.one_of(st.sampled_from(["not a url", "", "ftp://x/", "http://", "127.0.0.1/amer/", "https://[::1/"]),
                     st.text(max_size=20).filter(lambda s: "://" not in s), JSON_VALUES)
TEAMS_KEYS = ["type", "id", "name", "text", "value", "value.action", "value.action.verb", "value.action.data",
              "value.action.data.pvebotView", "value.action.data.pvebotView.reply",
              "value.action.data.pvebotView.userIds", "value.action.data.command", "from", "from.aadObjectId",
              "conversation", "conversation.id", "conversation.tenantId", "recipient", "channelData", "replyToId",
              "channelId"]


@st.composite
def teams_activities(draw: Any, fake: FakeBotFramework) -> dict[str, Any] | Any:
    kind = draw(st.sampled_from(["message", "press", "refresh", "random", "other"]))
    if kind == "random":
        return draw(JSON_VALUES)
    if kind == "message":
        base = message(fake, draw(st.sampled_from(["whoami", "help", "vm list", ""])))
    elif kind == "press":
        base = card_action(fake, {"command": "whoami"}, verb="whoami", reply_to="act-1")
    elif kind == "refresh":
        view = draw(st.one_of(JSON_VALUES, st.fixed_dictionaries(
            {"reply": st.one_of(JSON_VALUES, st.fixed_dictionaries({}, optional={
                "text": JSON_VALUES, "title": JSON_VALUES, "severity": st.sampled_from(["info", "x", 1]),
                "fields": JSON_VALUES, "table": JSON_VALUES, "actions": JSON_VALUES, "private": JSON_VALUES})),
             "userIds": st.one_of(st.lists(st.text(max_size=8), max_size=3), JSON_VALUES)})))
        base = card_action(fake, {"pvebotView": view}, verb="refresh", reply_to="act-1")
    else:
        base = message(fake, "x") | {"type": draw(st.sampled_from(["conversationUpdate", "typing", "invoke", "event",
                                                                    "installationUpdate", "messageReaction"]))}
    activity = _mutate(base, draw, TEAMS_KEYS)
    if draw(st.integers(0, 3)) == 0:
        activity["serviceUrl"] = draw(NOT_URLS)
    return activity


@contextmanager
def _teams_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  ) -> Iterator[tuple[Served, Any, CountingDispatcher, FakeBotFramework]]:
    from adapters.queue import EmbeddedQueue
    from bot.bootstrap import build_app, build_server
    from tests.support import make_storage, provision
    from tests.teams_support import standard_hypervisors

    fake = FakeBotFramework(tmp_path).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.cert))
    storage = make_storage(f"sqlite:///{tmp_path / 'pvebot.db'}")
    provision(storage)
    app = build_app(teams_settings(storage, fake), storage=storage, hypervisors=standard_hypervisors(),
                    queue=EmbeddedQueue(workers=1), progress_interval=0.0, poll_interval=0.01)
    counting = CountingDispatcher(app.dispatcher)
    app.dispatcher = counting
    served = Served(build_server(app))
    try:
        yield served, app, counting, fake
    finally:
        served.close()
        app.close()
        fake.stop()
        storage.engine.dispose()


def test_teams_edge_never_fails_and_runs_only_what_is_authenticated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    with _teams_server(tmp_path, monkeypatch) as (served, app, counting, fake):

        @st.composite
        def requests(draw: Any) -> tuple[bytes, dict[str, str], bool]:
            activity = draw(teams_activities(fake))
            if draw(st.integers(0, 9)) == 0:
                raw = draw(st.binary(max_size=100))
            else:
                raw = json.dumps(activity).encode()
            service_url = activity.get("serviceUrl") if isinstance(activity, dict) else None
            claim = service_url if isinstance(service_url, str) and service_url else None
            how = draw(st.sampled_from(["valid", "valid", "valid", "none", "garbage", "expired", "audience", "key"]))
            token = {"valid": lambda: fake.issue(service_url=claim),
                     "none": lambda: None,
                     "garbage": lambda: draw(HEADER_TEXT),
                     "expired": lambda: fake.issue(service_url=claim, expires_in=-600),
                     "audience": lambda: fake.issue(service_url=claim, audience="someone-else"),
                     "key": lambda: fake.issue(service_url=claim, key=_OTHER_KEY)}[how]()
            headers = {"Content-Type": draw(st.sampled_from(["application/json"] * 5 + ["text/plain"]))}
            if token is not None:
                headers["Authorization"] = draw(st.sampled_from(["Bearer ", "bearer ", ""])) + token
            return raw, headers, how == "valid"

        @FUZZ
        @given(requests())
        def one(request: tuple[bytes, dict[str, str], bool]) -> None:
            raw, headers, valid = request
            before = len(counting.requests)
            status = served.post("/api/messages", raw, headers)
            # 501: an invoke that is not ours (task modules, message extensions), botbuilder's honest answer
            assert status < 500 or status == 501, (status, raw[:300], headers)
            if not valid:
                assert status in (400, 401, 415), (status, raw[:300])
                assert len(counting.requests) == before
            assert _tracebacks(caplog) == []

        one()
        assert _tracebacks(caplog) == []
        assert _audited(app) <= len(counting.requests)
