"""A Slack approvers channel needs no capture: the bot token and the channel id suffice, through the same ChannelRef."""

from __future__ import annotations

from tests import slack_support
from tests.slack_support import SlackBot, all_text, posted
from tests.support import STANDARD_DOC, provision

fake_slack = slack_support.fake_slack
slack_bot = slack_support.slack_bot

APPROVERS = "C0ACMEOPS"


async def test_a_slack_approvers_channel_gets_the_card_and_the_decision(slack_bot: SlackBot) -> None:
    anchor = "    quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}\n"
    assert anchor in STANDARD_DOC
    provision(slack_bot.app.storage,
              STANDARD_DOC.replace(anchor, anchor + f'    approval: {{approvers_channel: "slack:{APPROVERS}"}}\n'))
    fake, slack = slack_bot.fake, slack_bot.slack

    await slack.command("vm delete db-01 --reason cleanup", as_="bob@acme.example")
    [copy] = await fake.wait_for(lambda f: posted(f, channel=APPROVERS))
    assert "Delete db-01?" in all_text(copy)
    request = (await fake.wait_for(lambda f: posted(f)))[0]
    assert "cannot be reached" not in all_text(request)
    # with an approvers channel, nobody gets a direct message
    assert fake.of("conversations.open") == []
    # and the approvers are asked only once the requester's card is posted
    assert [c.args.get("channel") for c in fake.of("chat.postMessage")] == [slack_support.CHANNEL, APPROVERS]

    await slack.click(copy, "Delete db-01", as_="alice@acme.example")
    decided = await fake.wait_for(
        lambda f: "Approved by Alice Admin" in all_text(f.messages[(APPROVERS, copy["ts"])])
        and f.messages[(APPROVERS, copy["ts"])])
    assert not [b for b in decided["blocks"] if b["type"] == "actions"]
    assert fake.violations == []
