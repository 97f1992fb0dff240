"""ChannelRef, the typed channel value: parsing provisioning names, serialising, and what Teams' translator makes."""

from __future__ import annotations

import json

import pytest

from adapters.teams.translate import channel_of, to_incoming
from core.chat import ChannelRef
from core.errors import InvalidArguments

SERVICE = "https://smba.trafficmanager.net/amer/"


def _activity(conversation: str, kind: str = "channel") -> dict[str, object]:
    return {
        "type": "message", "id": "1700000000001", "serviceUrl": SERVICE, "channelId": "msteams",
        "from": {"id": "29:x", "aadObjectId": "aad-bob"}, "recipient": {"id": "28:bot", "name": "pvebot"},
        "conversation": {"id": conversation, "conversationType": kind, "tenantId": "tenant-acme"},
        "text": "<at>pvebot</at> whoami",
    }


@pytest.mark.parametrize(("name", "platform", "channel_id"), [
    ("slack:C0123ABCD", "slack", "C0123ABCD"),
    ("teams:19:abc@thread.tacv2", "teams", "19:abc@thread.tacv2"),  # the id keeps its own colons
    (" Teams:19:abc@thread.tacv2 ", "teams", "19:abc@thread.tacv2"),
])
def test_a_provisioning_name_parses_into_platform_and_id(name: str, platform: str, channel_id: str) -> None:
    parsed = ChannelRef.parse(name)
    assert (parsed.platform, parsed.channel_id) == (platform, channel_id)
    assert parsed.name == f"{platform}:{channel_id}"


@pytest.mark.parametrize("name", ["C0123", "slack:", ":C0123", ""])
def test_a_name_without_platform_or_id_is_refused(name: str) -> None:
    with pytest.raises(InvalidArguments, match="slack:C0123ABCD or teams:<conversation id>"):
        ChannelRef.parse(name)


def test_a_teams_message_in_a_thread_names_its_channel() -> None:
    channel = channel_of(_activity("19:abc@thread.tacv2;messageid=1700000000001"))
    assert channel == ChannelRef(platform="teams", channel_id="19:abc@thread.tacv2", workspace_id="tenant-acme",
                                 service_url=SERVICE, tenant_id="tenant-acme", bot_id="28:bot", bot_name="pvebot",
                                 bot_channel="msteams", conversation_type="channel")
    # and every typed request carries it for the dispatcher to capture
    incoming = to_incoming(_activity("19:abc@thread.tacv2;messageid=1700000000001"))
    assert incoming.request is not None and incoming.request.channel == channel


def test_a_channel_serialises_without_sdk_objects_and_comes_back_equal() -> None:
    channel = channel_of(_activity("a:1on1-bob", kind="personal"))
    data = json.loads(json.dumps(channel.to_dict()))
    assert ChannelRef.from_dict(data) == channel
    # unknown keys (a newer version's) are ignored rather than refused
    assert ChannelRef.from_dict({**data, "future": "x"}) == channel


def test_a_channel_becomes_the_conversation_the_notifiers_post_into() -> None:
    conversation = channel_of(_activity("19:abc@thread.tacv2;messageid=17")).conversation()
    assert (conversation.platform, conversation.channel, conversation.thread) == ("teams", "19:abc@thread.tacv2", None)
    assert conversation.get("service_url") == SERVICE and conversation.get("tenant_id") == "tenant-acme"
    assert conversation.get("bot_id") == "28:bot" and conversation.get("channel_id") == "msteams"
    slack = ChannelRef.parse("slack:C0123").conversation()
    assert (slack.platform, slack.channel, slack.extra) == ("slack", "C0123", ())
