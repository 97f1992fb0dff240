"""Teams: when the reply to a command cannot be sent (the connector answers 502, or Azure AD gives no token),
the job it announced is failed, not left QUEUED to run unannounced, and Teams' redelivery of the same
activity runs nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.model import JobState
from core.principal import Scope
from tests.teams_support import TeamsBot, message, running_bot


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
