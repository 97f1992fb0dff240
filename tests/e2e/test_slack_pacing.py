"""Slack under a 429 storm: every post paced per channel, retried by time, and every answer and verdict shown.

Real HTTP on loopback against the recording fake of Slack's Web API. The pace is shrunk
(0.2 s between calls in a channel instead of 1 s, Retry-After fractions of a second) so that
the tests stay fast; what is asserted is read from the fake's recorded call times, never
from timing the test itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from adapters.slack.notifier import SlackNotifier, outbox_client
from adapters.slack.outbound import ResponseUrlBudget
from adapters.slack.pacing import DeliveryFailed, Pace, SlackOutbox
from core.chat import ConversationRef, Reply
from core.ids import show_job
from core.model import Job
from core.principal import Scope
from tests import slack_support
from tests.slack_support import BOT_TOKEN, FakeSlack, SlackBot, lab_hypervisors, running_slack_bot

fake_slack = slack_support.fake_slack

INTERVAL = 0.2
PACED = ("chat.postMessage", "chat.update")


def _outbox(fake: FakeSlack, **pace: float) -> SlackOutbox:
    return SlackOutbox(outbox_client(BOT_TOKEN, base_url=fake.api_url), pace=Pace(**{"interval": INTERVAL, **pace}))


def _gaps_per_channel(fake: FakeSlack) -> dict[str, list[float]]:
    """Seconds between consecutive posts/edits (429-ed attempts included) in each channel, as Slack saw them."""
    times: dict[str, list[float]] = defaultdict(list)
    for call in fake.of(*PACED):
        times[call.args["channel"]].append(call.at)
    return {channel: [b - a for a, b in zip(sorted(at), sorted(at)[1:], strict=False)] for channel, at in times.items()}


def test_posts_are_paced_per_channel_and_429s_wait_for_retry_after(fake_slack: FakeSlack) -> None:
    outbox = _outbox(fake_slack)
    try:
        fake_slack.storm(0.6, retry_after=0.3)
        sent = [outbox.submit("chat.postMessage", {"channel": channel, "text": f"{channel} #{i}"})
                for i in range(4) for channel in ("C0A", "C0B")]
        answers = [future.result(timeout=outbox.bound + 5) for future in sent]
    finally:
        outbox.close()
    assert all(answer["ok"] for answer in answers)
    calls = fake_slack.of("chat.postMessage")
    assert len(calls) > 8  # the storm was on: some attempts got 429 and were tried again
    for channel, gaps in _gaps_per_channel(fake_slack).items():
        assert gaps and min(gaps) >= INTERVAL, channel
    for channel in ("C0A", "C0B"):
        # the first attempt in each channel met the storm: the next one waited for its Retry-After
        here = [c.at for c in calls if c.args["channel"] == channel]
        assert len(here) > 4 and here[1] - here[0] >= 0.3
    # each channel's messages arrived in the order they were handed over
    for channel in ("C0A", "C0B"):
        order = [m["text"] for m in sorted(fake_slack.messages.values(), key=lambda m: m["ts"])
                 if m["channel"] == channel]
        assert order == [f"{channel} #{i}" for i in range(4)]


def test_waiting_edits_of_one_message_coalesce_into_the_newest(fake_slack: FakeSlack) -> None:
    outbox = _outbox(fake_slack)
    notifier = SlackNotifier(outbox)
    try:
        message = notifier.post(ConversationRef(platform="slack", channel="C0A"), Reply(text="step 0"))
        edits = [outbox.submit("chat.update", {"channel": "C0A", "ts": message.message_id, "text": f"step {i}"})
                 for i in range(1, 10)]
        notifier.update(message, Reply(text="step 10"))
        outcomes = [future.result(timeout=outbox.bound + 5) for future in edits]
    finally:
        outbox.close()
    updates = fake_slack.of("chat.update")
    assert len(updates) == 1 and "step 10" in updates[0].args["text"]
    assert outcomes == [None] * 9  # superseded: a verdict too, and never sent
    assert "step 10" in fake_slack.messages[("C0A", message.message_id)]["text"]
    assert min(_gaps_per_channel(fake_slack)["C0A"]) >= INTERVAL


def test_a_post_that_cannot_get_through_fails_within_its_bound_and_says_so_without_secrets(
    fake_slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = _outbox(fake_slack, deadline=0.5)
    notifier = SlackNotifier(outbox)
    fake_slack.storm(30, retry_after=0.2)
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(DeliveryFailed) as failed:
            notifier.post(ConversationRef(platform="slack", channel="C0A"), Reply(text="the secret plan"))
    finally:
        outbox.close()
    assert "rate limited" in failed.value.reason
    lines = [r.getMessage() for r in caplog.records if r.name == "adapters.slack.pacing"]
    assert lines and "chat.postMessage in C0A" in lines[0]
    assert all(BOT_TOKEN not in line and "secret plan" not in line for line in caplog.messages)


def test_a_refusal_is_a_verdict_at_once_not_a_retry(fake_slack: FakeSlack) -> None:
    outbox = _outbox(fake_slack)
    fake_slack.fail_next("chat.update", body={"ok": False, "error": "message_not_found"})
    try:
        with pytest.raises(Exception) as refused:
            outbox.call("chat.update", {"channel": "C0A", "ts": "1.2", "text": "x"})
    finally:
        outbox.close()
    assert "message_not_found" in str(refused.value) and len(fake_slack.of("chat.update")) == 1


def test_a_response_url_takes_at_most_five_posts_in_thirty_minutes() -> None:
    budget = ResponseUrlBudget()
    assert [budget.take("https://hooks/1") for _ in range(6)] == [True] * 5 + [False]
    assert budget.take("https://hooks/2")


# ---- end to end: pvebot serve, many commands, a storm ----------------------------------------


def _hypervisors(n: int) -> object:
    hv = lab_hypervisors()
    for i in range(n):
        hv.cluster("lab").add(300 + i, f"t-{i:02d}", pool="acme", status="stopped")
    return hv


def _jobs(bot: SlackBot) -> list[Job]:
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        return uow.jobs.list(limit=100)


def _shown(fake: FakeSlack, job: Job) -> bool:
    """The job's own message shows its verdict."""
    with fake._lock:
        messages = list(fake.messages.values())
    return any(show_job(job.id) in json.dumps(m.get("blocks")) and "done in" in json.dumps(m.get("blocks"))
               and "queued" not in m.get("text", "") for m in messages)


async def _storm_of_commands(bot: SlackBot, n: int, *, channels: int) -> list[Job]:
    """``n`` commands at once in ``channels`` channels into a 1.5 s 429 storm; the jobs once all verdicts show."""
    bot.fake.storm(1.5, retry_after=0.3, from_first_call=True)
    await asyncio.gather(*(bot.slack.command(f"vm start t-{i:02d}", as_="bob@acme.example",
                                             channel=f"C0OPS{i % channels}") for i in range(n)))

    def settled(_: FakeSlack) -> list[Job] | None:
        found = _jobs(bot)
        done = len(found) == n and all(j.state.finished for j in found) and all(_shown(bot.fake, j) for j in found)
        return found if done else None

    return list(await bot.fake.wait_for(settled, timeout=60))


async def test_a_429_storm_leaves_no_command_unanswered_and_no_verdict_unshown(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    n = 12
    async with running_slack_bot(tmp_path, fake_slack, hypervisors=_hypervisors(n),
                                 slack_pace=Pace(interval=INTERVAL, deadline=30, fallback_deadline=20)) as bot:
        found = await _storm_of_commands(bot, n, channels=3)
        metrics = bot.app.telemetry.render().decode()
    assert sorted(j.state.value for j in found) == ["succeeded"] * n
    # one message a job: the answer that said "queued", edited through to its verdict
    for job in found:
        [message] = [m for m in fake_slack.messages.values() if show_job(job.id) in json.dumps(m["blocks"])]
        assert "done in" in json.dumps(message["blocks"]), message
    assert len(fake_slack.messages) == n and fake_slack.of("response_url") == []  # the storm ended within the bound
    rejected = [c for c in fake_slack.of(*PACED) if c.status == 429]
    assert rejected and max(c.at for c in rejected) < fake_slack.storm_ends  # the storm really hit
    for channel, gaps in _gaps_per_channel(fake_slack).items():
        assert min(gaps) >= INTERVAL, channel
    assert fake_slack.violations == []
    # every 429 shows in the metrics, though each was waited out and every post went through in the end
    throttled = [s.value for f in text_string_to_metric_families(metrics) for s in f.samples
                 if s.name == "pvebot_chat_rate_limited_total" and s.labels == {"platform": "slack"}]
    assert throttled == [len([c for c in fake_slack.calls if c.status == 429])]


async def test_answers_fall_back_to_the_response_url_when_the_bot_token_cannot_get_through(
    tmp_path: Path, fake_slack: FakeSlack
) -> None:
    n = 3
    # answers give up on the bot token after 0.3 s (they have a response_url); job messages wait it out
    async with running_slack_bot(tmp_path, fake_slack, hypervisors=_hypervisors(n),
                                 slack_pace=Pace(interval=INTERVAL, deadline=30, fallback_deadline=0.3)) as bot:
        found = await _storm_of_commands(bot, n, channels=1)
    by_url = [c.args for c in fake_slack.of("response_url")]
    assert len(by_url) == n and all(a["response_type"] == "in_channel" and "queued" in a["text"] for a in by_url)
    assert sorted(show_job(j.id) in json.dumps(by_url) for j in found) == [True] * n
    # no answer went twice, and the verdicts came with the bot token once the storm was over
    assert not [m for m in fake_slack.messages.values() if "queued" in m.get("text", "")]
    assert {c.token for c in fake_slack.of(*PACED)} == {BOT_TOKEN}


def test_the_notifier_keeps_the_token_out_of_its_repr(fake_slack: FakeSlack) -> None:
    outbox = _outbox(fake_slack)
    assert BOT_TOKEN not in repr(SlackNotifier(outbox)) + repr(outbox)
    outbox.close()
