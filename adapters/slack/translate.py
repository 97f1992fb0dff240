"""Slack payloads to neutral :class:`CommandRequest` objects. Pure functions, no I/O.

Three sources speak the same grammar: the ``/pve`` slash command, an ``app_mention``
("@pvebot vm list") and a button press (``block_actions``), whose value is the command
text of the :class:`core.chat.Action` it was rendered from, run as the one who clicked.
A button that asks for a text first (``Action.ask``, the reason of a Reject) opens a modal;
its ``view_submission`` runs the command with the text appended, as the one who submitted it.

:func:`parse_body` and :func:`check` are the HTTP edge's second gate, after the signature:
a signed body that is not what Slack sends raises :class:`MalformedPayload` (answered 400)
before bolt, whose request parsing assumes Slack's shapes, ever sees it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from core.chat import TYPOGRAPHIC_QUOTES, CommandRequest, ConversationRef, IdentityKey, with_answer

PLATFORM = "slack"
# every button of ours has an action id under ACTION_PREFIX (one listener takes them all); one that
# asks for a text first is under ASK_PREFIX, its value JSON with the command and the prompt
ACTION_PREFIX = "pvebot-btn-"
ASK_PREFIX = ACTION_PREFIX + "ask-"
# the modal that asks: its callback id, and where its one text input is
ASK_CALLBACK, NOTE_BLOCK, NOTE_ACTION = "pvebot-ask", "pvebot-note", "pvebot-note-text"
MAX_COMMAND = 2000  # a button value's limit: no command of ours is longer
_CHANNEL_ID = re.compile(r"[A-Z0-9]{1,40}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,12}")
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
# Slack clients "smarten" what people type: turn it back into the grammar's quotes and flags
_SMART = {**TYPOGRAPHIC_QUOTES, ord("\u00a0"): " "}
_DASH_FLAG = re.compile(r"(^|\s)[—–](?=[a-z])")


class MalformedPayload(ValueError):
    """A Slack request body that is not what Slack sends; the message is short and safe to log."""


@dataclass(frozen=True)
class Incoming:
    """A command to run and how to answer it."""

    request: CommandRequest
    # the slash command / block_actions response_url: the fallback when the bot cannot post
    response_url: str | None = None
    # mrkdwn context line under a public reply: who asked what
    caption: str | None = None


@dataclass(frozen=True)
class ButtonPress(Incoming):
    """A click on one of our buttons, with where the clicked message is."""

    message_ts: str = ""
    is_ephemeral: bool = False
    blocks: tuple[dict[str, Any], ...] = ()
    action_ts: str | None = None
    # "decision" (approve/deny), "page" (next/previous of a list) or "run"
    kind: str = "run"
    dedupe_key: str = ""
    # a button that asks for a text first: the prompt, the button's label, and the trigger to open the modal with
    ask: str | None = None
    label: str = ""
    trigger_id: str = ""


def conversation(*, team_id: str, channel: str, thread: str | None) -> ConversationRef:
    return ConversationRef(platform=PLATFORM, channel=channel, thread=thread or None, extra=(("team", team_id),))


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def normalize(text: str) -> str:
    """Command text as typed: Slack's escaping undone, smart quotes and dashes made plain again."""
    text = unescape(text).translate(_SMART)
    return _DASH_FLAG.sub(r"\1--", text).strip()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _text(data: Mapping[str, Any], key: str, *, where: str) -> str:
    """A field Slack always sends as a non-empty string."""
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedPayload(f"{where} without {key}")
    return value


def _optional(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedPayload(f"{key} is not an object")
    return value


def slash_command(body: Mapping[str, Any]) -> Incoming:
    """``/pve vm list``: the form fields Slack posts for a slash command.

    Raises:
        MalformedPayload: the team, user or channel is missing.
    """
    where = "slash command"
    team_id, user_id = _text(body, "team_id", where=where), _text(body, "user_id", where=where)
    channel_id = _text(body, "channel_id", where=where)
    text = normalize(_optional(body, "text")) or "help"
    # slash commands carry no event id; the trigger id is unique per invocation
    request_id = "slack-cmd-" + _digest(team_id, user_id, _optional(body, "trigger_id"))
    command = _optional(body, "command") or "/pve"
    return Incoming(
        request=CommandRequest(
            identity=IdentityKey(PLATFORM, team_id, user_id),
            text=text,
            conversation=conversation(team_id=team_id, channel=channel_id, thread=None),
            request_id=request_id,
        ),
        response_url=_optional(body, "response_url") or None,
        caption=f"<@{user_id}> `{command} {_code(text)}`",
    )


def _code(text: str) -> str:
    # inside inline code only the backtick breaks out, and Slack's three control characters
    return text.replace("`", "'").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")[:300]


def app_mention(body: Mapping[str, Any], *, bot_user_id: str | None) -> Incoming | None:
    """``@pvebot vm list`` in a channel: answered in the mention's thread. None when it is not for us.

    Raises:
        MalformedPayload: the channel or team is missing.
    """
    event = _object(body, "event")
    user_id = _optional(event, "user")
    if not user_id or event.get("bot_id"):
        return None
    team_id = _optional(event, "user_team") or _optional(event, "team") or _optional(body, "team_id")
    if not team_id:
        raise MalformedPayload("app_mention without team")
    channel = _text(event, "channel", where="app_mention")
    raw = _optional(event, "text")
    text = (raw.replace(f"<@{bot_user_id}>", " ", 1) if bot_user_id else _MENTION.sub(" ", raw, count=1))
    text = normalize(text) or "help"
    thread = _optional(event, "thread_ts") or _optional(event, "ts") or None
    event_id = _optional(body, "event_id")
    return Incoming(
        request=CommandRequest(
            identity=IdentityKey(PLATFORM, team_id, user_id),
            text=text,
            conversation=conversation(team_id=team_id, channel=channel, thread=thread),
            # retries of one event carry the same event_id: the same request
            request_id="slack-evt-" + (event_id or _digest(team_id, user_id, _optional(event, "ts"))),
        ),
    )


def _kind(command: str) -> str:
    words = command.split()
    if words and words[0] in ("approve", "deny"):
        return "decision"
    if "--page" in words:
        return "page"
    return "run"


def button_press(body: Mapping[str, Any]) -> ButtonPress | None:
    """A ``block_actions`` click on one of our buttons; None for anything else.

    Raises:
        MalformedPayload: the click says not who, in which team or channel, or on what.
    """
    actions = body.get("actions") or []
    if not isinstance(actions, list) or not all(isinstance(a, dict) for a in actions):
        raise MalformedPayload("actions is not a list of objects")
    if not actions:
        return None
    action = actions[0]
    ask = None
    if _optional(action, "action_id").startswith(ASK_PREFIX):
        command, ask = _asking(_optional(action, "value"))
    else:
        command = normalize(_optional(action, "value"))
    if not command:
        return None
    user, container, message = _object(body, "user"), _object(body, "container"), _object(body, "message")
    team_id = _optional(_object(body, "team"), "id") or _optional(user, "team_id")
    if not team_id:
        raise MalformedPayload("block_actions without team")
    user_id = _text(user, "id", where="block_actions user")
    channel = _optional(container, "channel_id") or _optional(_object(body, "channel"), "id")
    if not channel:
        raise MalformedPayload("block_actions without channel")
    message_ts = _optional(container, "message_ts") or _optional(message, "ts")
    # answers to a click go in the clicked message's thread (or start one under it)
    thread = _optional(message, "thread_ts") or message_ts or None
    action_ts = _optional(action, "action_ts")
    trigger_id = _optional(body, "trigger_id")
    blocks = message.get("blocks") or ()
    if not isinstance(blocks, (list, tuple)) or not all(isinstance(b, dict) for b in blocks):
        raise MalformedPayload("message blocks are not a list of objects")
    return ButtonPress(
        request=CommandRequest(
            identity=IdentityKey(PLATFORM, team_id, user_id),
            text=command,
            conversation=conversation(team_id=team_id, channel=channel, thread=thread),
            request_id="slack-btn-" + _digest(team_id, user_id, trigger_id or action_ts),
        ),
        response_url=_optional(body, "response_url") or None,
        message_ts=message_ts,
        is_ephemeral=bool(container.get("is_ephemeral")),
        blocks=tuple(blocks),
        action_ts=action_ts or None,
        kind=_kind(command),
        # one press delivered twice has the same message, action and action_ts
        dedupe_key=_digest(channel, message_ts, _optional(action, "action_id"), action_ts, user_id),
        ask=ask,
        label=_optional(_object(action, "text"), "text"),
        trigger_id=trigger_id,
    )


def _asking(value: str) -> tuple[str, str]:
    """An asking button's value, as ``render`` wrote it: the command and the prompt."""
    try:
        data = json.loads(value)
    except ValueError:
        raise MalformedPayload("asking button value is not JSON") from None
    command, ask = (data.get("command"), data.get("ask")) if isinstance(data, dict) else (None, None)
    if not isinstance(command, str) or not isinstance(ask, str):
        raise MalformedPayload("asking button value without command or prompt")
    return normalize(command), ask


def ask_metadata(press: ButtonPress) -> str:
    """What the modal carries until it is submitted: the command and where the clicked card is.

    Slack shows none of it to anyone; it is no secret either (the command is the button's value),
    and the response_url, which is one, stays out. The submitter is taken from the submission.
    """
    conversation = press.request.conversation
    return json.dumps({"command": press.request.text, "channel": conversation.channel,
                       "thread": conversation.thread or "", "ts": press.message_ts,
                       "ephemeral": press.is_ephemeral}, separators=(",", ":"))


def _metadata(view: Mapping[str, Any]) -> Mapping[str, Any]:
    """The modal's private_metadata, refused unless it has the shape :func:`ask_metadata` wrote."""
    try:
        data = json.loads(_text(view, "private_metadata", where="view"))
    except ValueError:
        raise MalformedPayload("view metadata is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedPayload("view metadata is not an object")
    command, channel = data.get("command"), data.get("channel")
    thread, ts, ephemeral = data.get("thread"), data.get("ts"), data.get("ephemeral")
    if not (isinstance(command, str) and command.strip() and len(command) <= MAX_COMMAND):
        raise MalformedPayload("view metadata without a command")
    if not (isinstance(channel, str) and _CHANNEL_ID.fullmatch(channel)):
        raise MalformedPayload("view metadata without a channel")
    if not all(isinstance(t, str) and (not t or _TS.fullmatch(t)) for t in (thread, ts)):
        raise MalformedPayload("view metadata with a malformed message ts")
    if not isinstance(ephemeral, bool):
        raise MalformedPayload("view metadata with a malformed ephemeral flag")
    return data


def _note(view: Mapping[str, Any]) -> str | None:
    typed = _object(_object(_object(_object(view, "state"), "values"), NOTE_BLOCK), NOTE_ACTION).get("value")
    if typed is not None and not isinstance(typed, str):
        raise MalformedPayload("view input value is not a string")
    return typed


def view_submission(body: Mapping[str, Any]) -> ButtonPress | None:
    """Submit on the modal an asking button opened: its command with the typed text, run as the submitter.

    It answers like the button's press would have, on the clicked card. None for others' modals.

    Raises:
        MalformedPayload: the submission says not who, in which team, or its metadata is not ours.
    """
    view = _object(body, "view")
    if view.get("callback_id") != ASK_CALLBACK:
        return None
    meta = _metadata(view)
    user = _object(body, "user")
    team_id = _optional(_object(body, "team"), "id") or _optional(user, "team_id")
    if not team_id:
        raise MalformedPayload("view_submission without team")
    user_id = _text(user, "id", where="view_submission user")
    view_id = _text(view, "id", where="view")
    command = meta["command"].strip()
    channel, message_ts = meta["channel"], meta["ts"]
    return ButtonPress(
        request=CommandRequest(
            identity=IdentityKey(PLATFORM, team_id, user_id),
            text=with_answer(command, _note(view)),
            conversation=conversation(team_id=team_id, channel=channel, thread=meta["thread"] or None),
            # one modal is submitted once: its view id names the request
            request_id="slack-view-" + _digest(team_id, user_id, view_id),
        ),
        message_ts=message_ts,
        is_ephemeral=meta["ephemeral"],
        kind=_kind(command),
        dedupe_key=_digest(view_id, user_id),
    )


# ---- the edge's check of a signed body, before bolt reads it ----------------------------------

# Keys bolt reads from every request before a listener runs (``slack_bolt.request.internals``:
# team, user, channel, enterprise ids and the like, looked up without type checks), with the types
# Slack gives them. Checked wherever they occur, since bolt looks inside events and messages too.
_SHAPES: dict[str, tuple[type, ...]] = {
    "enterprise": (str, dict), "team": (str, dict), "user": (str, dict), "channel": (str, dict),
    "event": (dict,), "view": (dict,), "message": (dict,), "previous_message": (dict,), "container": (dict,),
    "item": (dict,), "assistant_thread": (dict,), "function_data": (dict,), "authorizations": (list,),
    "actions": (list,), "response_urls": (list,),
}
_ID_HOLDERS = ("enterprise", "team", "user", "channel")
_MAX_DEPTH = 4


def parse_body(raw: bytes, *, content_type: str) -> dict[str, Any]:
    """The body as bolt will read it: JSON, a form, or a form whose ``payload`` field is JSON.

    The choice between them is bolt's own (``slack_bolt.request.internals.parse_body``), so that
    what is checked here is what bolt will see.

    Raises:
        MalformedPayload: not UTF-8, not parseable, or not a JSON object.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPayload("body is not UTF-8") from None
    if not text:
        return {}
    # exactly bolt's test (case and spaces included): where bolt reads a form, so must we
    try:
        if content_type.split(";")[0] == "application/json" or text.startswith("{"):
            parsed: Any = json.loads(text)
        elif "payload" in text:
            payload = dict(parse_qsl(text, keep_blank_values=True)).get("payload")
            parsed = {} if payload is None else json.loads(payload)
        else:
            parsed = dict(parse_qsl(text, keep_blank_values=True))
    except ValueError:  # JSONDecodeError, and parse_qsl on odd input
        raise MalformedPayload("body is not JSON or a form") from None
    if not isinstance(parsed, dict):
        raise MalformedPayload("body is not an object")
    return parsed


def _check_shapes(data: Mapping[str, Any], depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        return
    for key, types in _SHAPES.items():
        value: Any = data.get(key)
        if value is None:
            continue
        if not isinstance(value, types):
            raise MalformedPayload(f"{key} has the wrong type")
        if key in _ID_HOLDERS and isinstance(value, dict) and not isinstance(value.get("id", ""), str):
            raise MalformedPayload(f"{key} id is not a string")
        if isinstance(value, list):
            if not all(isinstance(item, dict) for item in value):
                raise MalformedPayload(f"{key} is not a list of objects")
            for item in value:
                _check_shapes(item, depth + 1)
        elif isinstance(value, dict):
            _check_shapes(value, depth + 1)


def check(body: Mapping[str, Any]) -> None:
    """Refuse a parsed body that Slack would not send, for the kinds we answer: all we read must be there.

    Other kinds (events and interactions we do not listen to) pass when their common fields have
    Slack's types; bolt answers them as unhandled.

    Raises:
        MalformedPayload: what is wrong, in a few safe words.
    """
    _check_shapes(body)
    if "ssl_check" in body:
        return
    if "command" in body:
        _text(body, "command", where="slash command")
        slash_command(body)
        return
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        raise MalformedPayload("neither a command nor a typed payload")
    if kind == "url_verification":
        _text(body, "challenge", where="url_verification")
    elif kind == "event_callback":
        event = _object(body, "event")
        if _text(event, "type", where="event") == "app_mention":
            app_mention(body, bot_user_id=None)
    elif kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            raise MalformedPayload("block_actions without actions")
        for action in actions:
            _text(action, "action_id", where="action")
        button_press(body)
    elif kind == "view_submission":
        if not body.get("view"):
            raise MalformedPayload("view_submission without view")
        view_submission(body)
