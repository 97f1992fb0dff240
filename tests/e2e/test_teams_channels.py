"""Teams approvers channels end to end: captured from a typed command, then sent approval cards through the connector.

Activities go over HTTP on loopback into ``create_app``; every card pvebot sends lands on the fake
Bot Framework connector of ``tests/teams_support.py``, under its regional serviceUrl path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import STANDARD_DOC
from tests.teams_support import (
    Recorded,
    TeamsBot,
    card_action,
    card_text,
    cards_of,
    message,
    running_bot,
    validate_card,
)

ACME_CHANNEL = "19:acme-approvers@thread.tacv2"
GLOBEX_CHANNEL = "19:globex-ops@thread.tacv2"
# a message in a channel's thread arrives in the thread's conversation, not the channel's
ACME_THREAD = f"{ACME_CHANNEL};messageid=1700000000001"
NOT_ADDED = ("cannot be reached yet: the bot has not been added to this Teams channel "
             "(type any pvebot command there once)")


def _doc() -> str:
    acme = "    quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}\n"
    globex = "    pools: [{cluster: lab, pool: globex}]\n"
    carol = "identities: [{platform: slack, team_id: T0GLOBEX, user_id: U0CAROL}]"
    dave = "identities: [{platform: slack, team_id: T0GLOBEX, user_id: U0DAVE}]"
    for anchor in (acme, globex, carol, dave):
        assert STANDARD_DOC.count(anchor) == 1, anchor
    return (STANDARD_DOC
            .replace(acme, acme + f'    approval: {{approvers_channel: "teams:{ACME_CHANNEL}"}}\n')
            .replace(globex, globex + f'    approval: {{approvers_channel: "teams:{GLOBEX_CHANNEL}"}}\n')
            .replace(carol, carol[:-1] + ", {platform: teams, tenant_id: tenant-globex, aad_object_id: aad-carol}]")
            .replace(dave, dave[:-1] + ", {platform: teams, tenant_id: tenant-globex, aad_object_id: aad-dave}]"))


@pytest.fixture
async def bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TeamsBot]:
    async with running_bot(tmp_path, monkeypatch, doc=_doc()) as running:
        yield running


def _posts_to(bot: TeamsBot, conversation: str) -> list[Recorded]:
    """New top-level messages in a conversation (not replies to a message in it)."""
    return [c for c in bot.fake.activities("POST") if c.path == f"/amer/v3/conversations/{conversation}/activities"]


def _activity_id(bot: TeamsBot, call: Recorded) -> str:
    # the fake connector numbers what it accepts, in order; only POSTs are numbered here
    return f"act-{bot.fake.activities('POST').index(call) + 1}"


def _reply_to_bob(bot: TeamsBot) -> Recorded:
    [reply] = [c for c in bot.fake.activities("POST") if c.path.startswith("/amer/v3/conversations/a:1on1-bob/")]
    return reply


async def _type_in_acme_channel(bot: TeamsBot, text: str = "<at>pvebot</at> whoami") -> None:
    status, _ = await bot.post(message(bot.fake, text, user="aad-alice", conversation=ACME_THREAD,
                                       conversation_type="channel"))
    assert status == 200


async def test_a_captured_channel_receives_the_card_and_its_decision(bot: TeamsBot) -> None:
    await _type_in_acme_channel(bot)
    assert _posts_to(bot, ACME_CHANNEL) == []  # typing there answered in the thread, nothing else yet

    status, _ = await bot.post(message(bot.fake, "vm delete db-01 --reason cleanup"))  # bob, in his 1:1 chat
    assert status == 200

    [copy] = _posts_to(bot, ACME_CHANNEL)
    assert copy.authorization is not None and copy.authorization.startswith("Bearer ")
    assert copy.body["conversation"] == {"id": ACME_CHANNEL} and "replyToId" not in copy.body
    [card] = cards_of(copy.body)
    validate_card(card)
    assert card["body"][0]["items"][0]["text"] == "⚠️ Delete db-01?" and "db-01" in card_text(card)
    # the approvers' copy: the requester may be in the channel too, so its buttons show to the
    # deciders only (their own view, through refresh), and the text says who decides and what to type
    assert "actions" not in card and card["refresh"]["userIds"] == ["aad-alice"]
    assert "An approver decides here (not the requester): Alice Admin, Erin Admin" in card_text(card)
    status, view = await bot.post(card_action(bot.fake, card["refresh"]["action"]["data"], verb="refresh",
                                              reply_to=_activity_id(bot, copy), conversation=ACME_THREAD,
                                              conversation_type="channel"))
    assert status == 200
    validate_card(view["value"])
    assert [(a["title"], a.get("style")) for a in view["value"]["actions"]] == [("Delete db-01", "destructive"),
                                                                                 ("Reject", None)]
    # bob, the requester, asks for his view of it: the common one, without buttons
    status, bobs = await bot.post(card_action(bot.fake, card["refresh"]["action"]["data"], verb="refresh",
                                              reply_to=_activity_id(bot, copy), conversation=ACME_THREAD,
                                              conversation_type="channel", user="aad-bob"))
    assert status == 200 and "actions" not in bobs["value"]
    requester_card = cards_of(_reply_to_bob(bot).body)[0]
    assert "cannot be reached" not in card_text(requester_card)
    label = card_text(card).split("approve apr-")[1][:10]

    # alice presses Approve on the channel's copy
    copy_id = _activity_id(bot, copy)
    press = card_action(bot.fake, {"command": f"approve apr-{label}"}, verb="approve", reply_to=copy_id,
                        conversation=ACME_THREAD, conversation_type="channel")
    status, answer = await bot.post(press)
    assert status == 200 and "approved" in card_text(answer["value"])

    def edits() -> list[dict[str, Any]]:
        return [cards_of(c.body)[0] for c in bot.fake.activities("PUT")
                if c.path == f"/amer/v3/conversations/{ACME_CHANNEL}/activities/{copy_id}"]

    # the channel's copy shows the decision, then how its job ended
    decided = bot.fake.wait_for(lambda: [e for e in edits()[-1:] if "Delete db-01: done" in card_text(e)],
                                what="the channel's copy edited")[0]
    validate_card(decided)
    assert "Approved by Alice Admin" in card_text(decided) and "actions" not in decided
    # the decider's invoke answer is the decided card as the channel's copy showed it at the decision
    assert answer["value"]["body"] in [e["body"] for e in edits()]
    bot.fake.wait_for(lambda: 102 not in bot.hypervisors.cluster("lab").guests, what="the VM deleted")


async def test_an_uncaptured_channel_is_shown_waiting_until_someone_types_there(bot: TeamsBot) -> None:
    await bot.post(message(bot.fake, "vm delete db-01 --reason cleanup"))
    reply = _reply_to_bob(bot)
    assert _posts_to(bot, ACME_CHANNEL) == []
    assert f"the approvers channel teams:{ACME_CHANNEL} {NOT_ADDED}" in card_text(cards_of(reply.body)[0])

    # alice asks in her own chat: that captures her chat, not the approvers channel
    await bot.post(message(bot.fake, "approval channel", user="aad-alice", conversation="a:1on1-alice"))
    state = card_text(bot.fake.activities("POST")[-1].body)
    assert f"teams:{ACME_CHANNEL}" in state and "waiting: the bot has not been added" in state
    assert "globex" not in state

    await _type_in_acme_channel(bot)

    # the request made meanwhile gets its copy, and the requester's card loses the warning
    [copy] = bot.fake.wait_for(lambda: _posts_to(bot, ACME_CHANNEL), what="the waiting request posted")
    assert "Delete db-01?" in card_text(cards_of(copy.body)[0])
    [edit] = [c for c in bot.fake.activities("PUT") if c.path.endswith(f"/activities/{_activity_id(bot, reply)}")]
    assert "cannot be reached" not in card_text(edit.body)
    await bot.post(message(bot.fake, "approval channel", user="aad-alice", conversation="a:1on1-alice"))
    assert "ready" in card_text(bot.fake.activities("POST")[-1].body)


async def test_a_channel_captured_in_one_companys_tenant_gets_only_that_companys_cards(bot: TeamsBot) -> None:
    status, _ = await bot.post(message(bot.fake, "<at>pvebot</at> whoami", user="aad-carol", tenant="tenant-globex",
                                       conversation=GLOBEX_CHANNEL, conversation_type="channel"))
    assert status == 200

    # acme's request: its own channel is not captured, and globex's is never a stand-in
    await bot.post(message(bot.fake, "vm delete db-01 --reason cleanup"))
    assert _posts_to(bot, GLOBEX_CHANNEL) == [] and _posts_to(bot, ACME_CHANNEL) == []
    assert NOT_ADDED in card_text(_reply_to_bob(bot).body)

    # globex's request goes to the channel globex's provisioning names
    await bot.post(message(bot.fake, "vm delete gx-01", user="aad-dave", tenant="tenant-globex",
                           conversation="a:1on1-dave"))
    [copy] = _posts_to(bot, GLOBEX_CHANNEL)
    text = card_text(cards_of(copy.body)[0])
    assert "gx-01" in text and "db-01" not in text
    assert _posts_to(bot, ACME_CHANNEL) == []
