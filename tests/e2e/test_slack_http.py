"""``pvebot serve`` with Slack over real HTTP on loopback: signed slash commands, clicks and events
against a recording fake of Slack's Web API."""

from __future__ import annotations

import time

from core.principal import Scope
from tests.slack_support import (  # noqa: F401  (pytest fixtures)
    BOT_TOKEN,
    CHANNEL,
    SlackBot,
    all_text,
    fake_slack,
    posted,
    sign,
    slack_bot,
)


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
