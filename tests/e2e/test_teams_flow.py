"""Teams end to end: real Bot Framework activities over HTTP on loopback, a fake connector capturing replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.teams_support import (
    ACCESS_TOKEN,
    APP_ID,
    TeamsBot,
    card_action,
    card_text,
    cards_of,
    message,
    running_bot,
    validate_card,
)


@pytest.fixture
async def bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TeamsBot]:
    async with running_bot(tmp_path, monkeypatch) as running:
        yield running


async def test_message_gets_a_card_reply(bot: TeamsBot) -> None:
    status, _ = await bot.post(message(bot.fake, "pve vm list"))
    assert status == 200
    [reply] = bot.fake.activities("POST")
    # a reply to the typed message, under the serviceUrl's own path
    assert reply.path.startswith("/amer/v3/conversations/a:1on1-bob/activities/in-")
    assert reply.authorization == f"Bearer {ACCESS_TOKEN}"
    [card] = cards_of(reply.body)
    validate_card(card)
    assert "web-01" in card_text(card) and "db-01" in card_text(card) and "gx-01" not in card_text(card)
    assert "web-01" in card["fallbackText"]


async def test_channel_mention_is_stripped(bot: TeamsBot) -> None:
    activity = message(bot.fake, "<at>pvebot</at>&nbsp;whoami", conversation="19:general@thread.tacv2",
                       conversation_type="channel")
    status, _ = await bot.post(activity)
    assert status == 200
    [card] = cards_of(bot.fake.activities("POST")[0].body)
    validate_card(card)
    assert "bob@acme.example" in card_text(card)


async def test_job_card_is_updated_in_place(bot: TeamsBot) -> None:
    status, _ = await bot.post(message(bot.fake, "vm start db-01"))
    assert status == 200
    [announced] = bot.fake.activities("POST")
    announced_id = "act-1"
    assert "queued" in card_text(cards_of(announced.body)[0])
    # the reply is the job's card: edited until it is done, with Cancel while it runs, nothing else posted
    updates = bot.fake.wait_for(
        lambda: [c for c in bot.fake.activities("PUT") if "done" in card_text(c.body)], what="the final edit")
    assert all(c.path.endswith(f"/activities/{announced_id}") for c in bot.fake.activities("PUT"))
    assert updates[-1].body["id"] == announced_id
    assert len(bot.fake.activities("POST")) == 1
    for call in [announced, *bot.fake.activities("PUT")]:
        validate_card(cards_of(call.body)[0])
    assert "Cancel" not in card_text(cards_of(updates[-1].body)[0])
    assert bot.hypervisors.cluster("lab").guests[102].status == "running"


async def test_a_throttled_edit_is_sent_again_after_retry_after(bot: TeamsBot) -> None:
    bot.fake.throttle_edits = 2  # Teams says 429 twice; the notifier waits as told and sends again
    status, _ = await bot.post(message(bot.fake, "vm start db-01"))
    assert status == 200
    bot.fake.wait_for(lambda: [c for c in bot.fake.activities("PUT") if "done" in card_text(c.body)],
                      what="the final edit, despite the throttling")
    assert bot.fake.throttle_edits == 0


async def test_job_runs_once_when_teams_redelivers(bot: TeamsBot) -> None:
    activity = message(bot.fake, "vm start db-01")
    assert (await bot.post(activity))[0] == 200
    assert (await bot.post(activity))[0] == 200
    bot.fake.wait_for(lambda: [c for c in bot.fake.activities("PUT") if "done" in card_text(c.body)],
                      what="the final edit")
    assert [c for c in bot.hypervisors.cluster("lab").calls if c[0] == "qmstart"] == [("qmstart", 102)]


def _act_id(bot: TeamsBot, call: object) -> str:
    # the fake connector numbers the activities it accepts, in order
    return f"act-{bot.fake.activities('POST').index(call) + 1}"  # type: ignore[arg-type]


async def test_approval_via_invoke(bot: TeamsBot) -> None:
    await bot.post(message(bot.fake, "vm delete db-01 --reason cleanup"))
    [request] = [c for c in bot.fake.activities("POST") if "/conversations/a:1on1-bob/" in c.path]
    [card] = cards_of(request.body)
    validate_card(card)
    # the requester never sees decision buttons on her own request; it says who must decide
    assert "Action.Execute" not in card_text(card.get("actions", []))
    assert "Waiting for an approver: Alice Admin" in card_text(card)
    # approvers who are in this chat get their own view through a refresh: alice is listed, bob is not
    assert card["refresh"]["userIds"] == ["aad-alice"]
    approval = card_text(card).split("approve apr-")[1][:10]

    refresh = card_action(bot.fake, card["refresh"]["action"]["data"], verb="refresh",
                          reply_to=_act_id(bot, request))
    status, answer = await bot.post(refresh)
    assert status == 200 and answer["statusCode"] == 200
    view = answer["value"]
    validate_card(view)
    buttons = {a["title"]: a for a in view["actions"]}
    assert buttons["Delete db-01"]["type"] == "Action.Execute" and buttons["Delete db-01"]["style"] == "destructive"
    assert buttons["Delete db-01"]["data"] == {"command": f"approve apr-{approval}"}
    assert buttons["Delete db-01"]["fallback"]["type"] == "Action.Submit"
    # Reject opens a comment box; its Execute sends the comment along with the command
    reject = buttons["Reject"]
    assert reject["type"] == "Action.ShowCard"
    assert reject["card"]["body"][0]["type"] == "Input.Text"
    assert reject["card"]["actions"][0]["data"] == {"command": f"deny apr-{approval}"}

    # bob cannot approve his own request: the card stays, he is told why
    press = card_action(bot.fake, buttons["Delete db-01"]["data"], verb="approve", reply_to=_act_id(bot, request),
                        user="aad-bob")
    status, answer = await bot.post(press)
    assert status == 200 and answer["type"] == "application/vnd.microsoft.activity.message"

    status, answer = await bot.post(card_action(bot.fake, buttons["Delete db-01"]["data"], verb="approve",
                                                reply_to=_act_id(bot, request)))
    assert status == 200 and answer["type"] == "application/vnd.microsoft.card.adaptive"
    validate_card(answer["value"])
    assert "Approved by Alice Admin" in card_text(answer["value"])
    # everyone else's card is replaced by one that shows the decision, without buttons, then how its job
    # ended: "approved · job-… queued" would not stay true
    def last_edit(activity: Any) -> dict[str, Any] | None:
        edits = [c for c in bot.fake.activities("PUT") if c.path.endswith("/" + _act_id(bot, activity))]
        shown = cards_of(edits[-1].body)[0] if edits else None
        return shown if shown is not None and "Delete db-01: done" in card_text(shown) else None

    decided_card = bot.fake.wait_for(lambda: last_edit(request), what="the decided card")
    validate_card(decided_card)
    assert "Alice Admin" in card_text(decided_card) and "actions" not in decided_card and "refresh" not in decided_card
    assert "queued" not in card_text(decided_card)
    bot.fake.wait_for(lambda: 102 not in bot.hypervisors.cluster("lab").guests, what="the VM deleted")
    # the approver's own copy, in her personal conversation, ends the same
    [copy] = bot.fake.personal("aad-alice")
    assert bot.fake.wait_for(lambda: last_edit(copy), what="the approver's copy")["body"] == decided_card["body"]


async def test_without_an_approvers_channel_the_approver_gets_a_personal_conversation(bot: TeamsBot) -> None:
    await bot.post(message(bot.fake, "vm delete db-01 --reason cleanup"))
    # created through the connector with the approver's AAD object id and the tenant, as the bot
    [created] = bot.fake.created
    assert created.body["members"] == [{"id": "aad-alice"}] and created.body["isGroup"] is False
    assert created.body["tenantId"] == "tenant-acme"
    assert created.body["channelData"] == {"tenant": {"id": "tenant-acme"}}
    assert created.body["bot"]["id"].endswith(APP_ID) and created.authorization == f"Bearer {ACCESS_TOKEN}"
    [copy] = bot.fake.personal("aad-alice")
    [card] = cards_of(copy.body)
    validate_card(card)
    assert [a["title"] for a in card["actions"]] == ["Delete db-01", "Reject"] and "refresh" not in card
    assert "Waiting for an approver" not in card_text(card)

    # she rejects from there, with a comment: it becomes the reason, and every copy says so
    reject = next(a for a in card["actions"] if a["title"] == "Reject")["card"]["actions"][0]
    data = {**reject["data"], "pvebotNote": "  not before the  backup, it’s  --force of habit "}
    status, answer = await bot.post(card_action(bot.fake, data, verb="deny", reply_to=_act_id(bot, copy),
                                                conversation="a:personal-aad-alice"))
    assert status == 200 and answer["type"] == "application/vnd.microsoft.card.adaptive"
    # an apostrophe or a --word in the comment stays text (it is one quoted argument)
    assert "Rejected by Alice Admin" in card_text(answer["value"]) and (
        "not before the backup, it's --force of habit" in card_text(answer["value"]))
    [request] = [c for c in bot.fake.activities("POST") if "/conversations/a:1on1-bob/" in c.path]
    edits = bot.fake.wait_for(lambda: [c for c in bot.fake.activities("PUT") if c.path.endswith(
        "/" + _act_id(bot, request))], what="the requester's card decided")
    assert cards_of(edits[-1].body)[0]["body"] == answer["value"]["body"]
    assert 102 in bot.hypervisors.cluster("lab").guests


async def test_the_approver_is_asked_only_after_the_requester_has_the_card(bot: TeamsBot) -> None:
    await bot.post(message(bot.fake, "vm delete db-01 --reason cleanup"))
    posts = bot.fake.wait_for(lambda: bot.fake.personal("aad-alice") and bot.fake.activities("POST"),
                              what="the approver's copy")
    places = [c.path.split("/conversations/")[1].split("/")[0] for c in posts]
    assert places == ["a:1on1-bob", "a:personal-aad-alice"]


async def test_when_no_approver_can_be_reached_the_card_has_no_buttons_and_says_what_to_type(bot: TeamsBot) -> None:
    bot.fake.installed_for = set()  # the bot is installed for nobody: no personal conversation can be made
    await bot.post(message(bot.fake, "vm delete db-01 --reason cleanup"))
    assert bot.fake.personal("aad-alice") == []
    [request] = [c for c in bot.fake.activities("POST") if "/conversations/a:1on1-bob/" in c.path]
    # the card went out saying alice is asked; once her conversation could not be made, it was edited
    assert "Waiting for an approver: Alice Admin" in card_text(cards_of(request.body)[0])
    edits = bot.fake.wait_for(lambda: [c for c in bot.fake.activities("PUT")
                                       if c.path.endswith("/" + _act_id(bot, request))], what="the card edited")
    [card] = cards_of(edits[-1].body)
    validate_card(card)
    assert "actions" not in card
    text = card_text(card)
    assert "No approver could be sent this card" in text and "Alice Admin" in text and "must type `approve apr-" in text


async def test_action_submit_fallback_runs_the_command(bot: TeamsBot) -> None:
    activity = message(bot.fake, "", value={"command": "whoami"})
    status, _ = await bot.post(activity)
    assert status == 200
    assert "bob@acme.example" in card_text(bot.fake.activities("POST")[0].body)


async def test_unlinked_member_is_linked_by_email(bot: TeamsBot) -> None:
    bot.fake.members["aad-erin"] = {"id": "29:aad-erin", "aadObjectId": "aad-erin", "email": "Erin@acme.example",
                                    "userPrincipalName": "erin@acme.example"}
    status, _ = await bot.post(message(bot.fake, "whoami", user="aad-erin"))
    assert status == 200
    text = card_text(bot.fake.activities("POST")[-1].body)
    assert "erin@acme.example" in text and "linked your account" in text


async def test_malformed_invoke_is_400(bot: TeamsBot) -> None:
    bad = card_action(bot.fake, {}, verb="approve", reply_to="act-1")
    bad["value"] = {"action": {"type": "Action.Execute"}}
    status, _ = await bot.post(bad)
    assert status == 400
