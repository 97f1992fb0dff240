"""Teams at the edge: request keys per conversation and tenant, and malformed activities answered 400/401, never 500.

Real Bot Framework activities over HTTP on loopback (``tests/teams_support.py``), signed with the fake's key.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.principal import Scope
from tests.support import STANDARD_DOC
from tests.teams_support import TeamsBot, card_action, card_text, message, running_bot

# carol (Globex, another company) uses Teams too, in her own AAD tenant
TWO_TENANTS = STANDARD_DOC.replace(
    "identities: [{platform: slack, team_id: T0GLOBEX, user_id: U0CAROL}]",
    "identities: [{platform: slack, team_id: T0GLOBEX, user_id: U0CAROL},\n"
    "                  {platform: teams, tenant_id: tenant-globex, aad_object_id: aad-carol}]")


@pytest.fixture
async def bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TeamsBot]:
    async with running_bot(tmp_path, monkeypatch, doc=TWO_TENANTS) as running:
        yield running


def _jobs(bot: TeamsBot) -> list[tuple[str, int]]:
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        return sorted((j.action, int(j.target["vmid"])) for j in uow.jobs.list())


async def test_one_activity_id_in_two_conversations_and_two_tenants_is_three_requests(bot: TeamsBot) -> None:
    same_id = {"id": "1:same-activity-id"}
    bob = message(bot.fake, "vm start db-01", user="aad-bob", conversation="a:1on1-bob") | same_id
    alice = message(bot.fake, "vm reboot web-01", user="aad-alice", conversation="a:1on1-alice") | same_id
    carol = message(bot.fake, "vm reboot gx-01", user="aad-carol", tenant="tenant-globex",
                    conversation="a:1on1-carol") | same_id
    for activity in (bob, alice, carol):
        assert (await bot.post(activity))[0] == 200
    # Teams re-delivers bob's activity to the same conversation: it is the same request
    assert (await bot.post(bob))[0] == 200
    bot.fake.wait_for(lambda: len([c for c in bot.fake.activities("PUT") if "done" in card_text(c.body)]) >= 3,
                      what="three jobs done")
    assert _jobs(bot) == [("vm.reboot", 101), ("vm.reboot", 201), ("vm.start", 102)]
    with bot.app.deps.uow_factory(Scope.everything()) as uow:
        bobs_job = next(j.id for j in uow.jobs.list() if j.action == "vm.start")
    replies = {}
    for call in bot.fake.activities("POST"):
        replies.setdefault(call.path.split("/conversations/")[1].split("/")[0], []).append(card_text(call.body))
    assert sorted(replies) == ["a:1on1-alice", "a:1on1-bob", "a:1on1-carol"]
    again = [r for texts in replies.values() for r in texts if "already received" in r or "received already" in r]
    assert len(again) == 1 and bobs_job.removeprefix("job-") in again[0] and again[0] in replies["a:1on1-bob"]
    calls = [c for c in bot.hypervisors.cluster("lab").calls if c[0] in ("qmstart", "qmreboot")]
    assert sorted(calls) == [("qmreboot", 101), ("qmreboot", 201), ("qmstart", 102)]


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


NOT_URLS = ["not a url", "ftp://127.0.0.1/amer/", "http://", "https://[::1/x", "http://127.0.0.1:99999/",
            "127.0.0.1/amer/", "http://127.0.0.1:8080 /amer/"]


async def test_a_service_url_that_is_not_a_url_is_400_with_a_token_and_401_without(
        bot: TeamsBot, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for service_url in NOT_URLS:
        typed = message(bot.fake, "vm start db-01") | {"serviceUrl": service_url}
        pressed = card_action(bot.fake, {"command": "vm start db-01"}, verb="vm", reply_to="act-1") | {
            "serviceUrl": service_url}
        for activity in (typed, pressed):
            status, _ = await bot.post(activity, token=bot.fake.issue(service_url=service_url))
            assert status == 400, service_url
            assert (await bot.post(activity, token=None))[0] == 401
    refusals = [r for r in caplog.records if r.name == "pvebot.teams" and "refused" in r.getMessage()]
    assert len(refusals) == 4 * len(NOT_URLS) and all("\n" not in r.getMessage() for r in refusals)
    _no_tracebacks(caplog)
    assert _jobs(bot) == [] and bot.fake.activities() == []


MALFORMED_VIEWS = [
    None, "x", [1], {"userIds": "aad-alice"}, {"userIds": [1, 2]}, {"reply": "x"}, {"reply": []},
    {"reply": {"text": 5}}, {"reply": {"severity": "loud"}}, {"reply": {"severity": ["info"]}},
    {"reply": {"fields": [["a"]]}}, {"reply": {"fields": "ab"}}, {"reply": {"table": {"columns": ["a", "b"],
                                                                                          "rows": [["1"]]}}},
    {"reply": {"table": {"columns": "ab", "rows": []}}}, {"reply": {"actions": [["Approve", "", "primary", []]]}},
    {"reply": {"actions": [["Approve", "approve apr-1", {}, []]]}}, {"reply": {"actions": [["Approve"]]}},
    {"reply": {"title": {"a": 1}}}, {"reply": {"private": "yes"}},
]


async def test_a_refresh_with_a_malformed_view_is_400_never_500(
        bot: TeamsBot, caplog: pytest.LogCaptureFixture) -> None:
    for view in MALFORMED_VIEWS:
        refresh = card_action(bot.fake, {"pvebotView": view}, verb="refresh", reply_to="act-1")
        assert (await bot.post(refresh))[0] == 400, view
        assert (await bot.post(refresh, token=None))[0] == 401
    _no_tracebacks(caplog)


async def test_a_refresh_with_a_well_formed_view_still_shows_it(bot: TeamsBot) -> None:
    view = {"reply": {"text": "approve?", "actions": [["Approve", "approve apr-1", "primary", [2]]]},
            "userIds": ["aad-alice"]}
    status, answer = await bot.post(card_action(bot.fake, {"pvebotView": view}, verb="refresh", reply_to="act-1"))
    assert status == 200 and "approve apr-1" in card_text(answer["value"])
