"""A Slack button that asks for a text first (Reject's reason): a modal opened with the press's trigger_id,
whose signed view_submission runs the button's command with the text, as the one who submitted it."""

from __future__ import annotations

from typing import Any

from core.model import ApprovalRequest, ApprovalState
from core.principal import Scope
from tests import slack_support
from tests.slack_support import CHANNEL, SlackBot, all_text, posted
from tests.support import STANDARD_DOC, provision

fake_slack = slack_support.fake_slack
slack_bot = slack_support.slack_bot

APPROVERS = "C0ACMEOPS"
PROMPT = "Reason for rejecting (optional)"


def _approval(bot: SlackBot) -> ApprovalRequest:
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        [found] = uow.approvals.list()
    return found


def _texts(message: dict[str, Any]) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section" and "text" in b]


def _ephemerals(bot: SlackBot, user: str) -> list[str]:
    return [c.args["text"] for c in bot.fake.of("chat.postEphemeral") if c.args["user"] == user]


async def _request_and_press_reject(bot: SlackBot, *, channel: str, as_: str, requester: str = "bob@acme.example",
                                    trigger: str = "777.1.reject") -> tuple[dict[str, Any], dict[str, Any]]:
    """``requester`` asks to delete db-01; ``as_`` presses Reject on the copy in ``channel``: (her card, the modal)."""
    fake = bot.fake
    await bot.slack.command("vm delete db-01 --reason cleanup", as_=requester)
    card = (await fake.wait_for(lambda f: posted(f)))[0]
    [copy] = await fake.wait_for(lambda f: posted(f, channel=channel))
    before = len(fake.of("views.open"))
    await bot.slack.click(copy, "Reject", as_=as_, trigger_id=trigger)
    opened = await fake.wait_for(lambda f: f.of("views.open")[before:])
    assert opened[0].args["trigger_id"] == trigger
    return card, opened[0].args["view"]


async def test_reject_opens_a_modal_and_its_reason_reaches_the_requester(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    card, view = await _request_and_press_reject(slack_bot, channel="DU0ALICE", as_="alice@acme.example")
    # one optional text box labelled with the button's prompt, as long as Teams allows; Submit and Cancel
    assert (view["type"], view["title"]["text"], view["submit"]["text"], view["close"]["text"]) == (
        "modal", "Reject", "Reject", "Cancel")
    [box] = view["blocks"]
    assert (box["type"], box["optional"], box["label"]["text"]) == ("input", True, PROMPT)
    assert (box["element"]["type"], box["element"]["max_length"]) == ("plain_text_input", 500)
    assert "secret" not in view["private_metadata"] and "response" not in view["private_metadata"]
    # the press alone decides nothing
    assert _approval(slack_bot).state is ApprovalState.PENDING

    sent = await slack.submit(view, "disk is still needed", as_="alice@acme.example")
    assert sent.status == 200 and sent.body == ""  # an empty ack closes the modal
    decided = await fake.wait_for(lambda f: "disk is still needed" in all_text(f.messages[(CHANNEL, card["ts"])])
                                  and f.messages[(CHANNEL, card["ts"])])
    [line] = [t for t in _texts(decided) if t.startswith("Rejected by")]
    assert line.startswith("Rejected by Alice Admin at ") and line.endswith(": disk is still needed")
    approval = _approval(slack_bot)
    assert (approval.state, approval.decision_note, approval.job_id) == (ApprovalState.DENIED,
                                                                         "disk is still needed", None)
    # alice's copy shows the same decision; the job never ran
    await fake.wait_for(lambda f: "disk is still needed" in all_text(f.messages[("DU0ALICE", _dm_ts(f))]))
    assert 102 in slack_bot.hypervisors.cluster("lab").guests
    assert not [c for c in slack_bot.hypervisors.cluster("lab").calls if c[0] == "qmdestroy"]
    assert fake.violations == []


def _dm_ts(fake: Any) -> str:
    return str(posted(fake, channel="DU0ALICE")[0]["ts"])


async def test_an_empty_box_rejects_as_the_button_did_and_odd_text_stays_text(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    card, view = await _request_and_press_reject(slack_bot, channel="DU0ALICE", as_="alice@acme.example")
    await slack.submit(view, None, as_="alice@acme.example")
    await fake.wait_for(lambda f: "no reason given" in all_text(f.messages[(CHANNEL, card["ts"])]))
    assert _approval(slack_bot).state is ApprovalState.DENIED

    # a second request: an apostrophe, typographic quotes and a --flag in the reason are the reason
    await slack.command("vm delete web-01 --reason cleanup", as_="bob@acme.example")
    dms = await fake.wait_for(lambda f: posted(f, channel="DU0ALICE")[1:])
    await slack.click(dms[0], "Reject", as_="alice@acme.example")
    opened = await fake.wait_for(lambda f: f.of("views.open")[1:])
    await slack.submit(opened[0].args["view"], "it’s “prod”  --force", as_="alice@acme.example")

    def rejected(f: Any) -> list[ApprovalRequest]:
        with slack_bot.app.deps.uow_factory(Scope.everything()) as uow:
            return [a for a in uow.approvals.list() if a.state is ApprovalState.DENIED]

    both = await fake.wait_for(lambda f: len(rejected(f)) == 2 and rejected(f))
    assert sorted(a.decision_note for a in both) == ["", "it's \"prod\" --force"]
    assert fake.violations == []


async def test_a_submission_by_someone_who_may_not_decide_is_refused_as_a_typed_deny(slack_bot: SlackBot) -> None:
    # in an approvers channel everyone sees the buttons: the requester, a plain user and a user of another
    # company too. alice, an admin, asks herself: four eyes
    anchor = "    quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}\n"
    provision(slack_bot.app.storage,
              STANDARD_DOC.replace(anchor, anchor + f'    approval: {{approvers_channel: "slack:{APPROVERS}"}}\n'))
    fake, slack = slack_bot.fake, slack_bot.slack
    card, view = await _request_and_press_reject(slack_bot, channel=APPROVERS, as_="alice@acme.example",
                                                 requester="alice@acme.example")
    [copy] = posted(fake, channel=APPROVERS)
    modals = {"alice@acme.example": view}
    for n, who in enumerate(("bob@acme.example", "carol@globex.example")):
        await slack.click(copy, "Reject", as_=who, trigger_id=f"{778 + n}.1.reject")
        modals[who] = (await fake.wait_for(lambda f, k=n + 2: f.of("views.open")[k - 1:]))[0].args["view"]
    label = _approval(slack_bot).id

    for who, user, why in (("alice@acme.example", "U0ALICE", "cannot decide your own request"),
                           ("bob@acme.example", "U0BOB", "cannot use 'deny'"),
                           ("carol@globex.example", "U0CAROL", "not found")):
        await slack.submit(modals[who], "changed my mind", as_=who)
        [refused] = await fake.wait_for(lambda f, u=user: _ephemerals(slack_bot, u))
        assert why in refused
        # exactly what typing it says
        await slack.command(f"deny apr-{label} changed my mind", as_=who)
        [_, typed] = await fake.wait_for(lambda f, u=user: _ephemerals(slack_bot, u)[1:] and _ephemerals(slack_bot, u))
        assert refused == typed

    assert _approval(slack_bot).state is ApprovalState.PENDING
    # nothing was edited: neither alice's card nor the approvers' copy
    assert [c for c in fake.of("chat.update") if c.args["ts"] in (card["ts"], copy["ts"])] == []
    assert "Pending" in all_text(fake.messages[(CHANNEL, card["ts"])])
    assert 102 in slack_bot.hypervisors.cluster("lab").guests
    assert fake.violations == []


async def test_when_slack_will_not_open_the_modal_the_presser_is_told_what_to_type(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    await slack.command("vm delete db-01 --reason cleanup", as_="bob@acme.example")
    [copy] = await fake.wait_for(lambda f: posted(f, channel="DU0ALICE"))
    fake.fail_next("views.open", body={"ok": False, "error": "expired_trigger_id"})
    await slack.click(copy, "Reject", as_="alice@acme.example")
    [told] = await fake.wait_for(lambda f: _ephemerals(slack_bot, "U0ALICE"))
    label = _approval(slack_bot).id
    assert f"deny apr-{label} <reason>" in told
    assert _approval(slack_bot).state is ApprovalState.PENDING
