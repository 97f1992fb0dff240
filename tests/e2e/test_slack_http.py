"""``pvebot serve`` with Slack over real HTTP on loopback: signed slash commands, clicks and events
against a recording fake of Slack's Web API."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from core.principal import Scope
from tests import slack_support
from tests.slack_support import (
    BOT_TOKEN,
    CHANNEL,
    SlackBot,
    all_text,
    posted,
    sign,
)

# the shared fixtures, by name
fake_slack = slack_support.fake_slack
slack_bot = slack_support.slack_bot


async def test_slash_command_is_acked_at_once_and_answered_with_block_kit(slack_bot: SlackBot) -> None:
    sent = await slack_bot.slack.command("vm list", as_="bob@acme.example")
    assert sent.status == 200 and sent.elapsed < 1.0
    reply = await slack_bot.fake.wait_for(lambda f: posted(f))
    text = all_text(reply[0])
    assert "VMs (2, 1 running)" in text and "web-01" in text and "db-01" in text and "gx-01" not in text
    assert "<@U0BOB> `/pve vm list`" in text
    assert slack_bot.fake.violations == []
    assert {c.token for c in slack_bot.fake.of("chat.postMessage")} == {BOT_TOKEN}


async def test_healthz(slack_bot: SlackBot) -> None:
    async with slack_bot.slack.session.get(slack_bot.slack.bot_url + "/healthz") as response:
        assert response.status == 200 and (await response.json()) == {"status": "ok"}


def _commands_audited(bot: SlackBot) -> list[str]:
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        return [e.target for e in uow.audit.query(limit=100) if e.action == "command"]


async def test_forged_signature_and_stale_timestamp_get_401_and_run_nothing(slack_bot: SlackBot) -> None:
    slack = slack_bot.slack
    forged = await slack.command("vm start db-01", as_="bob@acme.example", signature="v0=" + "0" * 64)
    stale_ts = int(time.time()) - 6 * 60
    body = "team_id=T0ACME&user_id=U0BOB&channel_id=C0OPS&command=%2Fpve&text=vm+start+db-01&trigger_id=1"
    stale = await slack.post(body, content_type="application/x-www-form-urlencoded", timestamp=stale_ts,
                             signature=sign(body, timestamp=stale_ts))
    wrong_secret = await slack.post(body, content_type="application/x-www-form-urlencoded",
                                    signature=sign(body, timestamp=int(time.time()), secret="not-the-secret"))
    assert (forged.status, stale.status, wrong_secret.status) == (401, 401, 401)
    # a valid command afterwards proves the bot was listening; nothing before it ran
    await slack.command("whoami", as_="bob@acme.example")
    await slack_bot.fake.wait_for(lambda f: posted(f))
    assert _commands_audited(slack_bot) == ["whoami"]
    assert slack_bot.hypervisors.cluster("lab").guests[102].status == "stopped"
    assert [c.method for c in slack_bot.fake.calls if c.method.startswith("chat.")] == ["chat.postMessage"]


async def test_a_job_is_its_reply_edited_from_queued_to_done(slack_bot: SlackBot) -> None:
    fake = slack_bot.fake
    assert (await slack_bot.slack.command("vm start db-01", as_="bob@acme.example")).status == 200
    reply = (await fake.wait_for(lambda f: posted(f)))[0]
    assert "queued job-" in all_text(reply)
    final = await fake.wait_for(lambda f: "done in" in all_text(f.messages[(CHANNEL, reply["ts"])])
                                and f.messages[(CHANNEL, reply["ts"])])
    assert "start db-01" in all_text(final) and "Cancel" not in all_text(final)
    updates = [c for c in fake.of("chat.update") if c.args["ts"] == reply["ts"]]
    # edits waiting for the channel's turn coalesce (see test_slack_pacing): at least the verdict goes out
    assert updates and "done in" in json.dumps(updates[-1].args["blocks"])
    # one message: nothing posted in its thread, nothing else in the channel
    assert posted(fake, thread=reply["ts"]) == [] and len(posted(fake)) == 1
    assert len(fake.of("chat.postMessage")) == 1
    moments = [fake.of("chat.postMessage")[0].at] + [u.at for u in updates]
    assert all(later - earlier >= 0.95 for earlier, later in zip(moments, moments[1:], strict=False))
    # progress never depends on the command's response_url (5 uses, 30 minutes): bot token only
    assert fake.of("response_url") == []
    assert {c.token for c in fake.of("chat.postMessage", "chat.update")} == {BOT_TOKEN}
    assert slack_bot.hypervisors.cluster("lab").guests[102].status == "running"
    assert fake.violations == []


async def test_a_429_is_retried_after_retry_after(slack_bot: SlackBot) -> None:
    fake = slack_bot.fake
    fake.rate_limit_next("chat.postMessage", retry_after=1)
    await slack_bot.slack.command("whoami", as_="bob@acme.example")
    reply = (await fake.wait_for(lambda f: posted(f)))[0]
    assert "Bob User" in all_text(reply)
    attempts = fake.of("chat.postMessage")
    assert len(attempts) == 2 and attempts[1].at - attempts[0].at >= 1.0


def _ephemerals(bot: SlackBot, user: str) -> list[str]:
    return [all_text(c.args) for c in bot.fake.of("chat.postEphemeral") if c.args["user"] == user]


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


async def test_without_an_approvers_channel_each_approver_gets_the_card_by_direct_message(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    await slack.command("vm delete db-01 --reason cleanup", as_="bob@acme.example")
    card = (await fake.wait_for(lambda f: posted(f)))[0]
    # the requester's own card: the question, who must decide, and no decision buttons for her
    assert "Delete db-01?" in all_text(card) and "Waiting for an approver: Alice Admin, Erin Admin" in all_text(card)
    assert _buttons(card) == []
    # each eligible approver (acme's admins; root is on another workspace's Slack, not the requester's bob)
    # gets a direct message opened with conversations.open, as Slack documents it, once the card is posted
    dms = await fake.wait_for(lambda f: [posted(f, channel=f"D{u}") for u in ("U0ALICE", "U0ERIN")]
                              if all(posted(f, channel=f"D{u}") for u in ("U0ALICE", "U0ERIN")) else None)
    opened = sorted(c.args["users"] for c in fake.of("conversations.open"))
    assert "U0BOB" not in opened and {"U0ALICE", "U0ERIN"} <= set(opened)
    for [copy] in dms:
        assert [(b["text"]["text"], b.get("style")) for b in _buttons(copy)] == [("Delete db-01", "danger"),
                                                                                   ("Reject", None)]
        assert "Waiting for an approver" not in all_text(copy)
    assert fake.violations == []


async def test_when_no_approver_can_be_reached_on_slack_the_card_says_who_and_what_to_type(
    slack_bot: SlackBot,
) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    for _ in range(2):  # alice and erin: Slack will not open a conversation with either
        fake.fail_next("conversations.open", body={"ok": False, "error": "user_not_found"})
    await slack.command("vm delete db-01 --reason cleanup", as_="bob@acme.example")
    card = (await fake.wait_for(lambda f: posted(f)))[0]

    def told(f: Any) -> dict[str, Any] | None:
        shown = f.messages[(CHANNEL, card["ts"])]
        return shown if "No approver could be sent this card" in all_text(shown) else None

    shown = await fake.wait_for(told)
    assert "Alice Admin" in all_text(shown) and "approve apr-" in all_text(shown)
    assert _buttons(shown) == [] and "Waiting for an approver" not in all_text(shown)
    assert not posted(fake, channel="DU0ALICE") and not posted(fake, channel="DU0ERIN")
    assert fake.violations == []


async def test_approval_buttons_decide_once_and_every_copy_shows_the_decision(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    await slack.command("vm delete db-01 --reason cleanup", as_="bob@acme.example")
    card = (await fake.wait_for(lambda f: posted(f)))[0]
    [alice_copy] = await fake.wait_for(lambda f: posted(f, channel="DU0ALICE"))
    [erin_copy] = await fake.wait_for(lambda f: posted(f, channel="DU0ERIN"))
    assert _buttons(alice_copy)[0]["value"].startswith("approve apr-")

    # alice approves; the same press delivered twice runs once
    action_ts, trigger = f"{time.time():.6f}", "555.1.same"
    first = await slack.click(alice_copy, "Delete db-01", as_="alice@acme.example", action_ts=action_ts,
                              trigger_id=trigger)
    again = await slack.click(alice_copy, "Delete db-01", as_="alice@acme.example", action_ts=action_ts,
                              trigger_id=trigger)
    assert first.status == again.status == 200
    done = await fake.wait_for(lambda f: [m for m in posted(f, thread=card["ts"]) if "done in" in all_text(m)])
    assert "delete db-01" in all_text(done[0])
    assert 102 not in slack_bot.hypervisors.cluster("lab").guests

    # the requester's card, both direct messages and the clicked one: the same decided card, no buttons
    def decided(f: Any) -> list[dict[str, Any]] | None:
        copies = [f.messages[(CHANNEL, card["ts"])], f.messages[("DU0ALICE", alice_copy["ts"])],
                  f.messages[("DU0ERIN", erin_copy["ts"])]]
        # the decision, then how its job ended (done): "queued" would not stay true
        return copies if all("Approved by Alice Admin" in all_text(m) and "Delete db-01: done" in all_text(m)
                             for m in copies) else None

    copies = await fake.wait_for(decided)
    assert all(_buttons(m) == [] and "queued" not in all_text(m) for m in copies)
    assert len({json.dumps(m["blocks"]) for m in copies}) == 1
    # nothing else was posted for the decision: the clicked card became the answer
    assert [m for m in posted(fake, channel="DU0ALICE")] == [fake.messages[("DU0ALICE", alice_copy["ts"])]]

    # a second approver clicking her stale copy is told who decided
    await slack.click(erin_copy, "Delete db-01", as_="erin@acme.example")
    told = await fake.wait_for(lambda f: _ephemerals(slack_bot, "U0ERIN"))
    assert "already approved by Alice Admin" in told[0]
    assert len([c for c in slack_bot.hypervisors.cluster("lab").calls if c[0] == "qmdestroy"]) == 1
    assert fake.violations == []


async def test_every_copy_of_an_approved_card_follows_its_job_to_the_end(slack_bot: SlackBot) -> None:
    # "Approved by … · job-… queued" must not stay on the cards once the job has ended, least of all
    # when it failed: the approvers read their copy, not the requester's thread
    fake, slack = slack_bot.fake, slack_bot.slack
    await slack.command("vm delete db-01 --reason cleanup", as_="bob@acme.example")
    card = (await fake.wait_for(lambda f: posted(f)))[0]
    [alice_copy] = await fake.wait_for(lambda f: posted(f, channel="DU0ALICE"))
    [erin_copy] = await fake.wait_for(lambda f: posted(f, channel="DU0ERIN"))
    slack_bot.hypervisors.cluster("lab").fail_next = "VM 102 is locked (backup)"
    await slack.click(alice_copy, "Delete db-01", as_="alice@acme.example")
    await fake.wait_for(lambda f: [m for m in posted(f, thread=card["ts"]) if "VM 102 is locked" in all_text(m)])

    def ended(f: Any) -> list[dict[str, Any]] | None:
        copies = [f.messages[(CHANNEL, card["ts"])], f.messages[("DU0ALICE", alice_copy["ts"])],
                  f.messages[("DU0ERIN", erin_copy["ts"])]]
        return copies if all(" failed" in all_text(m) for m in copies) else None

    copies = await fake.wait_for(ended)
    assert all("Approved by Alice Admin" in all_text(m) and "queued" not in all_text(m) for m in copies)
    assert len({json.dumps(m["blocks"]) for m in copies}) == 1
    assert fake.violations == []


async def test_reject_button_marks_every_copy_rejected(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    await slack.command("vm delete db-01", as_="bob@acme.example")
    card = (await fake.wait_for(lambda f: posted(f)))[0]
    [copy] = await fake.wait_for(lambda f: posted(f, channel="DU0ALICE"))
    await slack.click(copy, "Reject", as_="alice@acme.example")
    # Reject asks for a reason first (tests/e2e/test_slack_ask.py): submitted empty, it rejects at once
    [opened] = await fake.wait_for(lambda f: f.of("views.open"))
    await slack.submit(opened.args["view"], None, as_="alice@acme.example")
    await fake.wait_for(lambda f: "Rejected by Alice Admin" in all_text(f.messages[(CHANNEL, card["ts"])]))
    await fake.wait_for(lambda f: "Rejected by Alice Admin" in all_text(f.messages[("DU0ALICE", copy["ts"])]))
    assert 102 in slack_bot.hypervisors.cluster("lab").guests


async def test_secrets_stay_out_of_logs_and_reprs(slack_bot: SlackBot, caplog: pytest.LogCaptureFixture) -> None:
    from tests.slack_support import SIGNING_SECRET

    caplog.set_level(logging.DEBUG)
    await slack_bot.slack.command("vm start db-01", as_="bob@acme.example")
    await slack_bot.fake.wait_for(lambda f: [m for m in f.messages.values() if "done in" in all_text(m)])
    shown = caplog.text + repr(slack_bot.app.settings) + repr(slack_bot.app.notifier._notifiers)
    assert BOT_TOKEN not in shown and SIGNING_SECRET not in shown
