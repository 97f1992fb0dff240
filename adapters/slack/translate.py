"""Slack payloads to neutral :class:`CommandRequest` objects. Pure functions, no I/O.

Three sources speak the same grammar: the ``/pve`` slash command, an ``app_mention``
("@pvebot vm list") and a button press (``block_actions``), whose value is the command
text of the :class:`core.chat.Action` it was rendered from, run as the one who clicked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.chat import CommandRequest, ConversationRef, IdentityKey

PLATFORM = "slack"
_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
# Slack clients "smarten" what people type: turn it back into the grammar's quotes and flags
_SMART = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "\u00a0": " "})
_DASH_FLAG = re.compile(r"(^|\s)[—–](?=[a-z])")


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


def slash_command(body: Mapping[str, Any]) -> Incoming:
    """``/pve vm list``: the form fields Slack posts for a slash command."""
    team_id, user_id = str(body["team_id"]), str(body["user_id"])
    text = normalize(str(body.get("text") or "")) or "help"
    # slash commands carry no event id; the trigger id is unique per invocation
    request_id = "slack-cmd-" + _digest(team_id, user_id, str(body.get("trigger_id") or ""))
    command = str(body.get("command") or "/pve")
    return Incoming(
        request=CommandRequest(
            identity=IdentityKey(PLATFORM, team_id, user_id),
            text=text,
            conversation=conversation(team_id=team_id, channel=str(body["channel_id"]), thread=None),
            request_id=request_id,
        ),
        response_url=body.get("response_url") or None,
        caption=f"<@{user_id}> `{command} {_code(text)}`",
    )


def _code(text: str) -> str:
    # inside inline code only the backtick breaks out, and Slack's three control characters
    return text.replace("`", "'").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")[:300]


def app_mention(body: Mapping[str, Any], *, bot_user_id: str | None) -> Incoming | None:
    """``@pvebot vm list`` in a channel: answered in the mention's thread. None when it is not for us."""
    event = body.get("event") or {}
    user_id = event.get("user")
    if not user_id or event.get("bot_id"):
        return None
    team_id = str(event.get("user_team") or event.get("team") or body.get("team_id") or "")
    raw = str(event.get("text") or "")
    text = (raw.replace(f"<@{bot_user_id}>", " ", 1) if bot_user_id else _MENTION.sub(" ", raw, count=1))
    text = normalize(text) or "help"
    thread = event.get("thread_ts") or event.get("ts")
    event_id = str(body.get("event_id") or "")
    return Incoming(
        request=CommandRequest(
            identity=IdentityKey(PLATFORM, team_id, str(user_id)),
            text=text,
            conversation=conversation(team_id=team_id, channel=str(event["channel"]), thread=thread),
            # retries of one event carry the same event_id: the same request
            request_id="slack-evt-" + (event_id or _digest(team_id, str(user_id), str(event.get("ts")))),
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
    """A ``block_actions`` click on one of our buttons; None for anything else."""
    actions = body.get("actions") or []
    if not actions:
        return None
    action = actions[0]
    command = normalize(str(action.get("value") or ""))
    if not command:
        return None
    user = body.get("user") or {}
    team_id = str((body.get("team") or {}).get("id") or user.get("team_id") or "")
    user_id = str(user.get("id") or "")
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = str(container.get("channel_id") or (body.get("channel") or {}).get("id") or "")
    message_ts = str(container.get("message_ts") or message.get("ts") or "")
    # answers to a click go in the clicked message's thread (or start one under it)
    thread = message.get("thread_ts") or message_ts or None
    action_ts = str(action.get("action_ts") or "")
    trigger_id = str(body.get("trigger_id") or "")
    return ButtonPress(
        request=CommandRequest(
            identity=IdentityKey(PLATFORM, team_id, user_id),
            text=command,
            conversation=conversation(team_id=team_id, channel=channel, thread=thread),
            request_id="slack-btn-" + _digest(team_id, user_id, trigger_id or action_ts),
        ),
        response_url=body.get("response_url") or None,
        message_ts=message_ts,
        is_ephemeral=bool(container.get("is_ephemeral")),
        blocks=tuple(message.get("blocks") or ()),
        action_ts=action_ts or None,
        kind=_kind(command),
        # one press delivered twice has the same message, action and action_ts
        dedupe_key=_digest(channel, message_ts, str(action.get("action_id")), action_ts, user_id),
    )
