"""Mentions, retries, pagination, private answers, automatic linking and long output, over HTTP."""

from __future__ import annotations

import json

from core.principal import Scope
from tests import slack_support
from tests.slack_support import (
    CHANNEL,
    SlackBot,
    all_text,
    posted,
)

# the shared fixtures, by name
fake_slack = slack_support.fake_slack
slack_bot = slack_support.slack_bot


async def test_url_verification_is_answered(slack_bot: SlackBot) -> None:
    body = json.dumps({"token": "legacy", "challenge": "c-123", "type": "url_verification"})
    sent = await slack_bot.slack.post(body, content_type="application/json")
    assert sent.status == 200 and "c-123" in sent.body


async def test_app_mention_uses_the_same_grammar_and_a_retry_runs_nothing_twice(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    first = await slack.mention("vm start db-01", as_="bob@acme.example", event_id="Ev0001")
    retry = await slack.mention("vm start db-01", as_="bob@acme.example", event_id="Ev0001", retry_num=1)
    assert first.status == retry.status == 200
    # answered in the mention's thread, by one message that the job edits to its outcome
    replies = await fake.wait_for(lambda f: [m for (c, _), m in f.messages.items() if m.get("thread_ts")
                                             and "done in" in all_text(m)])
    thread = replies[0]["thread_ts"]
    in_thread = posted(fake, thread=thread)
    assert len(in_thread) == 1 and len(fake.of("chat.postMessage")) == 1
    assert len([c for c in slack_bot.hypervisors.cluster("lab").calls if c[0] == "qmstart"]) == 1
    assert posted(fake) == []  # nothing at the top level of the channel
    assert fake.violations == []


async def test_next_button_pages_the_list_in_place(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    lab = slack_bot.hypervisors.cluster("lab")
    for vmid in range(300, 325):
        lab.add(vmid, f"app-{vmid}", pool="acme")
    await slack.command("vm list", as_="bob@acme.example")
    page1 = (await fake.wait_for(lambda f: posted(f)))[0]
    assert "page 1 of 2" in all_text(page1) and "Previous" not in all_text(page1)
    await slack.click(page1, "Next ▶", as_="bob@acme.example")
    page2 = await fake.wait_for(lambda f: "page 2 of 2" in all_text(f.messages[(CHANNEL, page1["ts"])])
                                and f.messages[(CHANNEL, page1["ts"])])
    assert "◀ Previous" in all_text(page2) and "Next" not in all_text(page2)
    assert len(posted(fake)) == 1  # the same message, edited
    assert fake.violations == []


async def test_errors_are_ephemeral_to_the_caller_only(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    await slack.command("vm lst", as_="bob@acme.example")
    await slack.command("whoami", as_="U0STRANGER")
    errors = await fake.wait_for(lambda f: len(f.of("chat.postEphemeral")) == 2 and f.of("chat.postEphemeral"))
    by_user = {c.args["user"]: all_text(c.args) for c in errors}
    assert "unknown command 'vm lst'" in by_user["U0BOB"]
    assert "not linked" in by_user["U0STRANGER"].lower()
    assert posted(fake) == [] and fake.violations == []


async def test_ephemeral_falls_back_to_response_url_where_the_bot_cannot_post(slack_bot: SlackBot) -> None:
    fake = slack_bot.fake
    fake.fail_next("chat.postEphemeral", body={"ok": False, "error": "channel_not_found"})
    await slack_bot.slack.command("vm lst", as_="bob@acme.example", channel="D0SOMEDM")
    answered = await fake.wait_for(lambda f: f.of("response_url"))
    assert answered[0].args["response_type"] == "ephemeral" and "vm lst" in all_text(answered[0].args)


async def test_unlinked_user_with_a_company_email_is_linked_and_told(slack_bot: SlackBot) -> None:
    fake = slack_bot.fake
    fake.emails["U0NEWBOB"] = ("T0ACME", "Bob@acme.example")
    fake.emails["U0EVE"] = ("T0ACME", "bob@evil.example")
    await slack_bot.slack.command("whoami", as_="U0NEWBOB")
    await slack_bot.slack.command("whoami", as_="U0EVE")
    linked = (await fake.wait_for(lambda f: posted(f)))[0]
    assert "linked your account to pvebot as bob@acme.example" in all_text(linked)
    refused = await fake.wait_for(lambda f: f.of("chat.postEphemeral"))
    assert refused[0].args["user"] == "U0EVE" and "not linked" in all_text(refused[0].args).lower()
    with slack_bot.app.deps.uow_factory(Scope.everything()) as uow:
        assert uow.identities.find(platform="slack", workspace_id="T0ACME", platform_user_id="U0NEWBOB")
        assert uow.identities.find(platform="slack", workspace_id="T0ACME", platform_user_id="U0EVE") is None


async def test_help_is_split_across_sections_within_limits(slack_bot: SlackBot) -> None:
    await slack_bot.slack.command("help", as_="alice@acme.example")
    reply = (await slack_bot.fake.wait_for(lambda f: posted(f)))[0]
    assert "help &lt;group&gt;" in all_text(reply) and slack_bot.fake.violations == []
    await slack_bot.slack.command("help vm", as_="alice@acme.example")
    reply = (await slack_bot.fake.wait_for(lambda f: posted(f)[1:]))[0]
    assert "vm list [--cluster CLUSTER]" in all_text(reply) and slack_bot.fake.violations == []
