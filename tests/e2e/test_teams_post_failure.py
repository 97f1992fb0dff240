"""Teams: when the reply to a command cannot be sent (the connector answers 502, or Azure AD gives no token),
the job it announced is failed, not left QUEUED to run unannounced, and Teams' redelivery of the same
activity runs nothing; an approval request whose card cannot be sent is withdrawn before any approver is asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.ids import show_approval
from core.model import ApprovalState, JobState
from core.principal import Scope
from tests.teams_support import TeamsBot, card_text, message, running_bot


@pytest.fixture
async def bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TeamsBot]:
    async with running_bot(tmp_path, monkeypatch) as running:
        yield running


async def test_a_reply_teams_refuses_fails_its_job_and_a_redelivery_runs_nothing(bot: TeamsBot) -> None:
    bot.fake.fail_posts = 10  # the reply and its retries all meet a 502
    activity = message(bot.fake, "pve vm start db-01")
    status, _ = await bot.post(activity)
    assert status != 200  # Teams is told the turn failed, so it may deliver it again
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        [job] = uow.jobs.list(limit=10)
    assert job.state is JobState.FAILED, job.state
    assert "could not be posted" in job.result
    lab = bot.hypervisors.cluster("lab")
    assert not [c for c in lab.calls if c[0].startswith("qm")]  # nothing ran

    bot.fake.fail_posts = 0
    status, _ = await bot.post(activity)  # Teams' redelivery of the very same activity
    assert status == 200
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        assert [j.state for j in uow.jobs.list(limit=10)] == [JobState.FAILED]  # the same job, not run again
    assert not [c for c in lab.calls if c[0].startswith("qm")]


async def test_with_azure_ad_unreachable_the_job_is_failed_and_a_redelivery_runs_nothing(bot: TeamsBot) -> None:
    bot.fake.token_status = 503  # no connector token: the reply cannot be sent at all
    activity = message(bot.fake, "pve vm start db-01")
    status, _ = await bot.post(activity)
    assert status != 200
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        [job] = uow.jobs.list(limit=10)
    assert job.state is JobState.FAILED, job.state  # not left QUEUED to run unannounced
    assert "could not be posted" in job.result
    lab = bot.hypervisors.cluster("lab")
    assert not [c for c in lab.calls if c[0].startswith("qm")]

    bot.fake.token_status = None
    await asyncio.sleep(1.2)  # past the Retry-After msal honours before it asks Azure AD again
    status, _ = await bot.post(activity)  # Teams delivers it again once Azure AD is back
    assert status == 200
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        assert [j.state for j in uow.jobs.list(limit=10)] == [JobState.FAILED]
    assert not [c for c in lab.calls if c[0].startswith("qm")]


async def test_an_approval_request_whose_card_teams_refuses_is_withdrawn_and_nobody_is_asked(bot: TeamsBot) -> None:
    # only the requester's conversation fails: the approver's would be reachable
    bot.fake.fail_posts, bot.fake.fail_posts_in = 10, "a:1on1-bob"
    activity = message(bot.fake, "vm delete db-01 --reason cleanup")
    status, _ = await bot.post(activity)
    assert status != 200
    # no approver was asked: no personal conversation made, nothing posted to alice
    assert bot.fake.created == [] and bot.fake.personal("aad-alice") == []
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        [approval] = uow.approvals.list(limit=10)
        audited = [e for e in uow.audit.query() if e.action == "approval.withdrawn"]
    assert approval.state is ApprovalState.FAILED and approval.copies == []
    assert "withdrawn" in approval.decision_note and "no approver was asked" in approval.decision_note
    assert [(e.actor, e.target.split()[0]) for e in audited] == [("system", show_approval(approval.id))]

    # Teams delivers the same activity again: the requester is shown it closed, and still nobody is asked
    bot.fake.fail_posts = 0
    assert (await bot.post(activity))[0] == 200
    [shown] = [c for c in bot.fake.activities("POST") if "/conversations/a:1on1-bob/" in c.path][-1:]
    assert "no approver was asked" in card_text(shown.body) and "already waiting" not in card_text(shown.body)
    assert bot.fake.created == [] and bot.fake.personal("aad-alice") == []

    # an approver who finds it anyway (approval list --all) cannot approve it
    status, _ = await bot.post(message(bot.fake, f"approve {show_approval(approval.id)}", user="aad-alice",
                                       conversation="a:1on1-alice"))
    assert status == 200
    [answer] = [c for c in bot.fake.activities("POST") if "/conversations/a:1on1-alice/" in c.path]
    text = card_text(answer.body)
    assert f"{show_approval(approval.id)} was closed" in text and "no approver was asked" in text
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        assert uow.approvals.get(approval.id).state is ApprovalState.FAILED  # type: ignore[union-attr]
        assert uow.jobs.list(limit=10) == []
    assert 102 in bot.hypervisors.cluster("lab").guests
