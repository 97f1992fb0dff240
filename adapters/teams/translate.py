"""Teams Activity → neutral :class:`CommandRequest`: the one place that reads Bot Framework activities.

Pure functions over the activity's JSON (``Activity.serialize()`` or the raw body), so moving to
Microsoft's successor SDK changes how we get that dict, not what we make of it.

What arrives:
- a typed ``message``: ``pve vm list`` (1:1) or ``<at>pvebot</at> vm list`` (channel);
- an ``Action.Submit`` press: a ``message`` whose ``value`` holds ``{"command": ...}``;
- an ``Action.Execute`` press: an ``invoke`` named ``adaptiveCard/action`` with ``value.action.data``;
- a refresh (``refresh.userIds``): the same invoke with verb ``refresh`` and the card's view in its data.
"""

from __future__ import annotations

import hashlib
import html
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from core.chat import (
    MAX_ASK,
    ActionStyle,
    ChannelRef,
    CommandRequest,
    ConversationRef,
    IdentityKey,
    Severity,
    with_answer,
)

PLATFORM = "teams"
ADAPTIVE_CARD_ACTION = "adaptiveCard/action"
REFRESH_VERB = "refresh"
# how a card's Action.Execute/Action.Submit data carries the command its button runs
COMMAND_KEY = "command"
# the input of a button that asks for a text (``Action.ask``): Teams merges inputs into the action's data
NOTE_KEY = "pvebotNote"
MAX_NOTE = MAX_ASK
VIEW_KEY = "pvebotView"

_MENTION = re.compile(r"<at>.*?</at>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_PREFIX = re.compile(r"^pve(?:bot)?(?:\s+|$)", re.IGNORECASE)


class MalformedActivity(ValueError):
    """The activity cannot be understood (answered 400, never 500)."""


@dataclass(frozen=True)
class Incoming:
    """What an activity asks of the bot.

    ``request`` is None when there is nothing to run (conversation updates, typing, a refresh).
    ``invoke`` says the answer goes into the HTTP response (Universal Actions) instead of a new message.
    ``view`` is the card state a refresh asks to see again, with the presser's AAD object id in ``identity``.
    """

    request: CommandRequest | None
    invoke: bool = False
    view: dict[str, Any] | None = None
    identity: IdentityKey | None = None


def clean_text(text: str | None) -> str:
    """Drop ``<at>`` mentions, HTML and a leading ``pve``/``pvebot`` from a typed message."""
    without_mentions = _MENTION.sub(" ", text or "")
    plain = html.unescape(_TAG.sub(" ", without_mentions)).replace("\xa0", " ")
    words = " ".join(plain.split())
    return _PREFIX.sub("", words, count=1).strip()


def tenant_of(activity: dict[str, Any]) -> str | None:
    conversation = activity.get("conversation") or {}
    channel_data = activity.get("channelData") or {}
    return conversation.get("tenantId") or (channel_data.get("tenant") or {}).get("id")


def identity_of(activity: dict[str, Any]) -> IdentityKey:
    """The presser/typist as (teams, AAD tenant, AAD object id); the emulator has no AAD: its user id stands in."""
    sender = activity.get("from") or {}
    user = sender.get("aadObjectId") or sender.get("id")
    if not user:
        raise MalformedActivity("activity without a sender")
    return IdentityKey(PLATFORM, tenant_of(activity) or "", str(user))


def service_url_of(activity: dict[str, Any]) -> str:
    """Where replies to ``activity`` go: an http(s) URL with a host, as the Bot Framework always sends.

    Raises:
        MalformedActivity: missing or not such a URL (botbuilder would fail on it mid-turn).
    """
    url = activity.get("serviceUrl")
    if not isinstance(url, str) or not url or any(c.isspace() for c in url):
        raise MalformedActivity("activity without a serviceUrl")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a bad port or IPv6 literal
        port_ok = False
    if not port_ok or parts.scheme not in ("http", "https") or not parts.hostname:
        raise MalformedActivity("serviceUrl is not an http(s) URL")
    return url


def conversation_of(activity: dict[str, Any]) -> ConversationRef:
    """Everything a worker on another machine needs to rebuild a ConversationReference and post."""
    conversation = activity.get("conversation") or {}
    if not isinstance(conversation, dict) or not conversation.get("id"):
        raise MalformedActivity("activity without a conversation")
    service_url = service_url_of(activity)
    bot = activity.get("recipient") or {}
    extra = {
        "service_url": service_url,
        "tenant_id": tenant_of(activity) or "",
        "bot_id": bot.get("id") or "",
        "bot_name": bot.get("name") or "",
        "channel_id": activity.get("channelId") or "msteams",
        "conversation_type": conversation.get("conversationType") or "",
    }
    return ConversationRef(
        platform=PLATFORM,
        channel=str(conversation["id"]),
        thread=activity.get("replyToId") or None,
        extra=tuple(sorted((k, str(v)) for k, v in extra.items())),
    )


def channel_of(activity: dict[str, Any]) -> ChannelRef:
    """The channel or chat an activity came from, as the bot can post a new message into it later.

    A message in a channel's thread arrives in ``19:…@thread.tacv2;messageid=…``: the channel is the
    part before ``;messageid=``, which is also how provisioning names it.
    """
    conversation = conversation_of(activity)
    tenant = conversation.get("tenant_id") or ""
    return ChannelRef(
        platform=PLATFORM,
        channel_id=conversation.channel.split(";messageid=", 1)[0],
        workspace_id=tenant,
        service_url=conversation.get("service_url") or "",
        tenant_id=tenant,
        bot_id=conversation.get("bot_id") or "",
        bot_name=conversation.get("bot_name") or "",
        bot_channel=conversation.get("channel_id") or "",
        conversation_type=conversation.get("conversation_type") or "",
    )


def request_id_of(activity: dict[str, Any]) -> str:
    """The key that makes a re-delivered activity run once, and only that activity.

    Teams makes an activity id unique within its conversation only: two chats (of one company or
    of two) can both send ``1:abc``. So the key is the tenant, the conversation and the activity id
    together, hashed to fit the column. Rows stored under a bare activity id before this stay as
    they are; they simply no longer collide with anyone else's.
    """
    activity_id = activity.get("id")
    if not activity_id:
        # nothing to recognise a re-delivery by: every delivery is a new request
        return "teams-" + uuid.uuid4().hex
    conversation = activity.get("conversation") or {}
    parts = (tenant_of(activity) or "", str(conversation.get("id") or ""), str(activity_id))
    return "teams-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


def _request(activity: dict[str, Any], text: str) -> CommandRequest:
    sender = activity.get("from") or {}
    return CommandRequest(
        identity=identity_of(activity),
        text=text,
        conversation=conversation_of(activity),
        # Teams redelivers an activity with the same id in the same conversation: that makes a job run once
        request_id=request_id_of(activity),
        claimed_email=sender.get("email") or None,
        channel=channel_of(activity),
    )


def _command_from(data: Any) -> str | None:
    """The button's command, with the text its presser typed into the card appended (a deny reason)."""
    if isinstance(data, dict) and isinstance(data.get(COMMAND_KEY), str) and data[COMMAND_KEY].strip():
        command = " ".join(data[COMMAND_KEY].split())
        note = data.get(NOTE_KEY)
        return with_answer(command, note if isinstance(note, str) else None)
    return None


def to_incoming(activity: dict[str, Any]) -> Incoming:
    """Translate one activity (its JSON form, camelCase keys) into what the bot should do.

    Raises:
        MalformedActivity: an invoke or button press without the data the bot put on its cards.
    """
    kind = activity.get("type")
    if kind == "message":
        command = _command_from(activity.get("value"))  # Action.Submit
        text = command if command is not None else clean_text(activity.get("text"))
        if not text:
            return Incoming(request=None)
        return Incoming(request=_request(activity, text))
    if kind == "invoke" and activity.get("name") == ADAPTIVE_CARD_ACTION:
        action = (activity.get("value") or {}).get("action")
        if not isinstance(action, dict) or not isinstance(action.get("data"), dict):
            raise MalformedActivity("adaptiveCard/action without action data")
        data = action["data"]
        if action.get("verb") == REFRESH_VERB:
            return Incoming(request=None, invoke=True, view=view_of(data.get(VIEW_KEY)), identity=identity_of(activity))
        command = _command_from(data)
        if command is None:
            raise MalformedActivity("adaptiveCard/action without a command")
        return Incoming(request=_request(activity, command), invoke=True)
    if kind == "invoke":
        # other invokes (task modules, message extensions) are not ours; botbuilder answers 501
        return Incoming(request=None, invoke=True)
    return Incoming(request=None)


# ---- a refresh's view: data our cards carried, but the client sends it back, so it is checked like input ----

_SEVERITIES = frozenset(v.value for v in Severity)
_STYLES = frozenset(v.value for v in ActionStyle)


def _one_of(value: Any, choices: frozenset[str]) -> bool:
    return isinstance(value, str) and value in choices


def _strings(value: Any, *, n: int | None = None) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value) and (n is None or len(value) == n)


def _optional_text(data: dict[str, Any], key: str) -> bool:
    return data.get(key) is None or isinstance(data.get(key), str)


def _action_ok(action: Any) -> bool:
    if not isinstance(action, list) or len(action) not in (4, 5):
        return False
    label, command, style, only_for = action[:4]
    ask_ok = len(action) == 4 or isinstance(action[4], str)
    return ask_ok and (isinstance(label, str) and isinstance(command, str) and bool(command.split())
            and _one_of(style, _STYLES) and isinstance(only_for, list)
            and all(isinstance(u, (int, str)) and not isinstance(u, bool) for u in only_for))


def _table_ok(table: Any) -> bool:
    if not table:
        return True
    if not isinstance(table, dict) or not _strings(table.get("columns")):
        return False
    rows = table.get("rows")
    return isinstance(rows, list) and all(_strings(row, n=len(table["columns"])) for row in rows)


def _sections_ok(sections: Any) -> bool:
    return isinstance(sections, list) and all(
        isinstance(s, list) and len(s) == 2 and isinstance(s[0], str) and isinstance(s[1], list)
        and all(_strings(item, n=2) for item in s[1]) for s in sections)


def view_of(view: Any) -> dict[str, Any]:
    """The view a refresh asks to see again, refused unless it has the shape ``render.card`` wrote.

    Raises:
        MalformedActivity: anything else (answered 400).
    """
    if not isinstance(view, dict) or not _strings(view.get("userIds") or []):
        raise MalformedActivity("refresh without a view")
    reply = view.get("reply")
    reply = {} if reply is None else reply
    fields = reply.get("fields", []) if isinstance(reply, dict) else None
    if not (isinstance(reply, dict) and isinstance(reply.get("text", ""), str)
            and _optional_text(reply, "title") and _optional_text(reply, "footer")
            and _optional_text(reply, "progress_of") and _optional_text(reply, "job_id")
            and _one_of(reply.get("severity", "info"), _SEVERITIES) and isinstance(reply.get("private", False), bool)
            and isinstance(fields, list) and all(_strings(f, n=2) for f in fields)
            and _table_ok(reply.get("table")) and _sections_ok(reply.get("sections", []))
            and _optional_text(reply, "highlight")
            and isinstance(reply.get("details", []), list) and all(_strings(f, n=2) for f in reply.get("details", []))
            and isinstance(reply.get("actions", []), list) and all(_action_ok(a) for a in reply.get("actions", []))):
        raise MalformedActivity("refresh with a malformed view")
    return view
