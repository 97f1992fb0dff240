"""``POST /slack/events`` at the edge: the signature first, on the raw body; 401 unsigned, 400 malformed, never 500.

Real HTTP on loopback against ``pvebot serve`` (``tests/slack_support.py``); every refusal is one short log
line without a traceback, and nothing runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.parse

import pytest

from core.principal import Scope
from tests import slack_support
from tests.slack_support import SIGNING_SECRET, SlackBot, posted

fake_slack = slack_support.fake_slack
slack_bot = slack_support.slack_bot

JSON, FORM = "application/json", "application/x-www-form-urlencoded"
# the shapes that used to answer 500 with a traceback, before any signature check
SHAPES: list[tuple[bytes, str]] = [
    (b"[1,2,3]", JSON), (b'"x"', JSON), (b"null", JSON), (b'{"type": "event_callback", "event": {"ty', JSON),
    (b"team_id=T0ACME&user_id=U0BOB&command=%2Fpve", JSON), (b"\xff\xfe\x00\x81binary", JSON),
    (b"payload=%5B1%2C2%5D", FORM), (b"payload=%22x%22", FORM), (b"payload=null", FORM), (b"payload=%7Bnot", FORM),
]


def signature(raw: bytes, timestamp: str, secret: str = SIGNING_SECRET) -> str:
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + raw, hashlib.sha256).hexdigest()


async def send(bot: SlackBot, raw: bytes, *, content_type: str, signed: bool = True,
               timestamp: str | None = None) -> int:
    ts = timestamp if timestamp is not None else str(int(time.time()))
    headers = {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": signature(raw, ts) if signed else "v0=" + "0" * 64}
    async with bot.slack.session.post(bot.slack.bot_url + "/slack/events", data=raw, headers=headers) as response:
        await response.read()
        return response.status


def _audited(bot: SlackBot) -> list[str]:
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        return [e.target for e in uow.audit.query(limit=100) if e.action == "command"]


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "adapters.slack.app" and "refused" in r.getMessage()]


def _assert_quiet(caplog: pytest.LogCaptureFixture, expected_refusals: int) -> None:
    assert [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.exc_info] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    refusals = _refusals(caplog)
    assert len(refusals) == expected_refusals
    assert all("\n" not in line and len(line) < 120 for line in refusals)


async def _proves_nothing_ran(bot: SlackBot) -> None:
    # a valid command afterwards shows the bot was listening; it is the only one that ran
    await bot.slack.command("whoami", as_="bob@acme.example")
    await bot.fake.wait_for(lambda f: posted(f))
    assert _audited(bot) == ["whoami"]
    assert [c.method for c in bot.fake.calls if c.method.startswith("chat.")] == ["chat.postMessage"]


async def test_bad_body_shapes_are_401_unsigned_and_400_signed(slack_bot: SlackBot,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for raw, content_type in SHAPES:
        assert await send(slack_bot, raw, content_type=content_type, signed=False) == 401, raw
        assert await send(slack_bot, raw, content_type=content_type) == 400, raw
    _assert_quiet(caplog, 2 * len(SHAPES))
    await _proves_nothing_ran(slack_bot)


NOT_NUMBERS = ["abc", "", "1e9", " 1", "1_700_000_000", "１２３", "²", "-5", "9" * 40]


async def test_a_timestamp_that_is_not_a_number_is_401(slack_bot: SlackBot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    raw = b"team_id=T0ACME&user_id=U0BOB&channel_id=C0OPS&command=%2Fpve&text=vm+start+db-01&trigger_id=1"
    for timestamp in NOT_NUMBERS:
        # signed with the secret over that very timestamp: only its form is wrong
        headers = {"Content-Type": FORM, "X-Slack-Request-Timestamp": timestamp,
                   "X-Slack-Signature": signature(raw, timestamp)}
        async with slack_bot.slack.session.post(slack_bot.slack.bot_url + "/slack/events", data=raw,
                                                headers=headers) as response:
            assert response.status == 401, timestamp
    _assert_quiet(caplog, len(NOT_NUMBERS))
    await _proves_nothing_ran(slack_bot)


def _command(**drop: None) -> bytes:
    form = {"team_id": "T0ACME", "user_id": "U0BOB", "channel_id": "C0OPS", "command": "/pve",
            "text": "vm start db-01", "trigger_id": "1.2.3"}
    return urllib.parse.urlencode({k: v for k, v in form.items() if k not in drop}).encode()


def _mention(**drop: None) -> bytes:
    event = {"type": "app_mention", "user": "U0BOB", "text": "<@U0PVEBOT> vm start db-01", "ts": "1.2",
             "channel": "C0OPS", "team": "T0ACME"}
    body = {"type": "event_callback", "event_id": "Ev1", "event": {k: v for k, v in event.items() if k not in drop}}
    if "team" in drop:
        body["team_id"] = ""
    return json.dumps(body).encode()


def _click(**drop: None) -> bytes:
    payload = {"type": "block_actions", "user": {"id": "U0BOB", "team_id": "T0ACME"}, "team": {"id": "T0ACME"},
               "container": {"type": "message", "message_ts": "1.2", "channel_id": "C0OPS"},
               "channel": {"id": "C0OPS"}, "trigger_id": "1.2.3",
               "actions": [{"action_id": "pvebot:0", "value": "vm start db-01", "action_ts": "1.3"}]}
    if "user_id" in drop:
        payload["user"] = {"team_id": "T0ACME"}
    if "team_id" in drop:
        payload["team"], payload["user"] = {}, {"id": "U0BOB"}
    if "channel" in drop:
        payload["container"], payload["channel"] = {"type": "message", "message_ts": "1.2"}, {}
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


async def test_signed_requests_without_team_user_or_channel_are_400_and_run_nothing(
        slack_bot: SlackBot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    cases = [
        (_command(team_id=None), FORM, "slash command without team_id"),
        (_command(user_id=None), FORM, "slash command without user_id"),
        (_command(channel_id=None), FORM, "slash command without channel_id"),
        (_mention(channel=None), JSON, "app_mention without channel"),
        (_mention(team=None), JSON, "app_mention without team"),
        (_click(user_id=None), FORM, "block_actions user without id"),
        (_click(team_id=None), FORM, "block_actions without team"),
        (_click(channel=None), FORM, "block_actions without channel"),
    ]
    for raw, content_type, _ in cases:
        assert await send(slack_bot, raw, content_type=content_type) == 400, raw
    _assert_quiet(caplog, len(cases))
    assert [line.split(": ", 1)[1] for line in _refusals(caplog)] == [why for _, _, why in cases]
    await _proves_nothing_ran(slack_bot)
    assert slack_bot.hypervisors.cluster("lab").guests[102].status == "stopped"
