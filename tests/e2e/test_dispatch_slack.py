"""Slack through the one delivery path: a reply Slack refuses starts nothing; one it takes threads the job."""

from __future__ import annotations

from core.model import JobState
from core.principal import Scope
from tests import slack_support
from tests.slack_support import SlackBot, all_text, posted

fake_slack = slack_support.fake_slack
slack_bot = slack_support.slack_bot


async def test_a_reply_slack_refuses_fails_its_job_and_nothing_runs(slack_bot: SlackBot) -> None:
    fake, slack = slack_bot.fake, slack_bot.slack
    # a mention has no response_url to fall back on: the refused post is the end of that reply
    fake.fail_next("chat.postMessage", body={"ok": False, "error": "channel_not_found"})
    sent = await slack.mention("vm start db-01", as_="bob@acme.example", event_id="Ev0404")
    assert sent.status == 200

    # the user is told where that is still possible: under their mention, by the job's own message
    failed = await fake.wait_for(lambda f: [m for m in f.messages.values() if "was not started" in all_text(m)])
    assert "its reply could not be posted; nothing was done" in all_text(failed[0])
    assert failed[0].get("thread_ts") and posted(fake) == []
    with slack_bot.app.deps.uow_factory(Scope.everything()) as uow:
        [job] = uow.jobs.list(limit=10)
    assert job.state is JobState.FAILED
    assert [c for c in slack_bot.hypervisors.cluster("lab").calls if c[0].startswith("qm")] == []
    assert not [m for (_, _), m in fake.messages.items() if "queued job-" in all_text(m)]

