"""Teams end to end: real Bot Framework activities over HTTP on loopback, a fake connector capturing replies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.teams_support import (
    ACCESS_TOKEN,
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
    announced = bot.fake.activities("POST")[0]
    announced_id = "act-1"
    assert "queued" in card_text(cards_of(announced.body)[0])
    # the job posts its card threaded under our reply, then edits that card until it is done
    progress = bot.fake.wait_for(lambda: [c for c in bot.fake.activities("POST") if c.path.endswith(announced_id)],
                                 what="the job's card")[0]
    assert progress.body["replyToId"] == announced_id
    updates = bot.fake.wait_for(
        lambda: [c for c in bot.fake.activities("PUT") if "done" in card_text(c.body)], what="the final edit")
    progress_id = "act-2"
    assert all(c.path.endswith(f"/activities/{progress_id}") for c in bot.fake.activities("PUT"))
    assert updates[-1].body["id"] == progress_id
    for call in [announced, progress, *bot.fake.activities("PUT")]:
        validate_card(cards_of(call.body)[0])
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


async def test_approval_via_invoke(bot: TeamsBot) -> None:
    await bot.post(message(bot.fake, "vm delete db-01 --reason cleanup"))
    request = bot.fake.activities("POST")[0]
    [card] = cards_of(request.body)
    validate_card(card)
    # only approvers see the buttons: alice (company admin) is listed, the requester bob is not
    assert card["refresh"]["userIds"] == ["aad-alice"]
    assert "Action.Execute" not in card_text(card.get("actions", []))
    approval = card_text(card).split("approve apr-")[1][:10]

    # alice's client asks for her view: the Approve/Deny buttons, as Action.Execute with a Submit fallback
    refresh = card_action(bot.fake, card["refresh"]["action"]["data"], verb="refresh", reply_to="act-1")
    status, answer = await bot.post(refresh)
    assert status == 200 and answer["statusCode"] == 200
    view = answer["value"]
    validate_card(view)
    buttons = {a["title"]: a for a in view["actions"]}
    assert buttons["Approve"]["type"] == "Action.Execute"
    assert buttons["Approve"]["data"] == {"command": f"approve apr-{approval}"}
    assert buttons["Approve"]["fallback"]["type"] == "Action.Submit"

    # bob cannot approve his own request: the card stays, he is told why
    press = card_action(bot.fake, buttons["Approve"]["data"], verb="approve", reply_to="act-1", user="aad-bob")
    status, answer = await bot.post(press)
    assert status == 200 and answer["type"] == "application/vnd.microsoft.activity.message"

    status, answer = await bot.post(card_action(bot.fake, buttons["Approve"]["data"], verb="approve",
                                                reply_to="act-1"))
    assert status == 200 and answer["type"] == "application/vnd.microsoft.card.adaptive"
    validate_card(answer["value"])
    assert "approved" in card_text(answer["value"])
    # everyone else's card is replaced by one that shows the decision, without buttons
    decided = bot.fake.wait_for(lambda: [c for c in bot.fake.activities("PUT") if c.path.endswith("/act-1")],
                                what="the decided card")[0]
    decided_card = cards_of(decided.body)[0]
    validate_card(decided_card)
    assert "Alice Admin" in card_text(decided_card) and "actions" not in decided_card
    bot.fake.wait_for(lambda: 102 not in bot.hypervisors.cluster("lab").guests, what="the VM deleted")


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
