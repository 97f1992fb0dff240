"""The Slack edge reads a body exactly as bolt will, and refuses what bolt could not read."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_bolt.request.internals import parse_body as bolt_parse_body

from adapters.slack.app import unsigned
from adapters.slack.translate import MalformedPayload, check, parse_body
from tests.slack_support import SIGNING_SECRET, sign

CONTENT_TYPES = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain",
                                 "Application/JSON", "application/json; charset=utf-8", ""])
BODIES = st.one_of(
    st.text(max_size=60),
    st.builds(json.dumps, st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                                       lambda inner: st.lists(inner, max_size=3)
                                       | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["payload", "command", "text"]), st.text(max_size=30)),
)


@settings(max_examples=300, deadline=None)
@given(BODIES, CONTENT_TYPES)
def test_parse_body_agrees_with_bolt_or_refuses(text: str, content_type: str) -> None:
    try:
        ours: Any = parse_body(text.encode(), content_type=content_type)
    except MalformedPayload:
        # refused: bolt would have failed on it, or read something other than an object
        try:
            theirs = bolt_parse_body(text, content_type.split(";")[0] or None)
        except ValueError:
            return
        assert not isinstance(theirs, dict) or theirs == {}  # nothing bolt could act on
        return
    assert ours == bolt_parse_body(text, content_type.split(";")[0] or None)


@pytest.mark.parametrize("body", [
    {"team": 5}, {"user": ["U"]}, {"authorizations": "x"}, {"authorizations": [1]}, {"event": "x"},
    {"type": "event_callback", "event": {"type": "app_mention", "user": "U", "channel": "C", "team": {"id": 1}}},
    {"type": "block_actions", "actions": [{"value": "help"}]}, {"type": "url_verification"}, {}, {"type": 3},
    {"command": 5, "team_id": "T", "user_id": "U", "channel_id": "C"}, {"response_urls": "x"},
])
def test_check_refuses_what_bolt_or_we_would_trip_on(body: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        check(body)


def test_signature_is_checked_over_raw_bytes_with_a_numeric_fresh_timestamp() -> None:
    now = 1_700_000_000
    body = "team_id=T&user_id=U"
    good = {"X-Slack-Request-Timestamp": str(now), "X-Slack-Signature": sign(body, timestamp=now)}
    assert unsigned(body.encode(), good, secret=SIGNING_SECRET, now=now) is None
    assert unsigned(body.encode() + b" ", good, secret=SIGNING_SECRET, now=now) == "bad signature"
    assert unsigned(body.encode(), good, secret=SIGNING_SECRET, now=now + 301) == "stale timestamp"
    assert unsigned(body.encode(), {}, secret=SIGNING_SECRET, now=now) == "no signature"
    odd = {**good, "X-Slack-Signature": "v0=é"}
    assert unsigned(body.encode(), odd, secret=SIGNING_SECRET, now=now) == "malformed signature headers"


def _submission(metadata: Any, *, callback_id: str = "pvebot-ask", value: Any = "why") -> dict[str, Any]:
    return {"type": "view_submission", "team": {"id": "T0ACME"}, "user": {"id": "U0ALICE", "team_id": "T0ACME"},
            "view": {"id": "V1", "callback_id": callback_id,
                     "private_metadata": metadata if isinstance(metadata, str) else json.dumps(metadata),
                     "state": {"values": {"pvebot-note": {"pvebot-note-text": {"value": value}}}}}}


GOOD = {"command": "deny apr-1", "channel": "DU0ALICE", "thread": "1700000000.000001", "ts": "1700000000.000001",
        "ephemeral": False}


@pytest.mark.parametrize("body", [
    _submission("not json"), _submission([GOOD]), _submission({**GOOD, "command": ""}),
    _submission({**GOOD, "command": "x" * 2001}), _submission({**GOOD, "channel": "C0OPS>"}),
    _submission({**GOOD, "ts": "now"}), _submission({**GOOD, "ephemeral": "no"}), _submission(GOOD, value=5),
    {**_submission(GOOD), "user": {}}, {"type": "view_submission"},
])
def test_a_view_submission_of_ours_must_carry_what_we_put_in_it(body: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        check(body)


def test_a_submitted_text_is_one_argument_after_the_command() -> None:
    from adapters.slack.translate import view_submission

    check(_submission(GOOD))
    check(_submission("anything", callback_id="someone-elses"))  # not ours: bolt answers it as unhandled
    press = view_submission(_submission(GOOD, value="  it's   prod "))
    assert press is not None and press.request.text == "deny apr-1 'it'\"'\"'s prod'"
    assert press.request.identity.user_id == "U0ALICE" and press.request.conversation.channel == "DU0ALICE"
    for empty in (None, "", "   "):
        empty_press = view_submission(_submission(GOOD, value=empty))
        assert empty_press is not None and empty_press.request.text == "deny apr-1"
