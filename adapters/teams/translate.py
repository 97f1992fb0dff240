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

from core.chat import ChannelRef, CommandRequest, ConversationRef, IdentityKey

PLATFORM = "teams"
ADAPTIVE_CARD_ACTION = "adaptiveCard/action"
REFRESH_VERB = "refresh"
# how a card's Action.Execute/Action.Submit data carries the command its button runs
COMMAND_KEY = "command"
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


def conversation_of(activity: dict[str, Any]) -> ConversationRef:
    """Everything a worker on another machine needs to rebuild a ConversationReference and post."""
    conversation = activity.get("conversation") or {}
    if not conversation.get("id") or not activity.get("serviceUrl"):
        raise MalformedActivity("activity without a conversation or serviceUrl")
    bot = activity.get("recipient") or {}
    extra = {
        "service_url": activity["serviceUrl"],
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
    if isinstance(data, dict) and isinstance(data.get(COMMAND_KEY), str) and data[COMMAND_KEY].strip():
        return " ".join(data[COMMAND_KEY].split())
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
            view = data.get(VIEW_KEY)
            if not isinstance(view, dict):
                raise MalformedActivity("refresh without a view")
            return Incoming(request=None, invoke=True, view=view, identity=identity_of(activity))
        command = _command_from(data)
        if command is None:
            raise MalformedActivity("adaptiveCard/action without a command")
        return Incoming(request=_request(activity, command), invoke=True)
    if kind == "invoke":
        # other invokes (task modules, message extensions) are not ours; botbuilder answers 501
        return Incoming(request=None, invoke=True)
    return Incoming(request=None)
