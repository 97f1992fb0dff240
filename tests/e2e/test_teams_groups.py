"""Teams members become pvebot users through Azure AD groups mapped in the provisioning file.

Real Bot Framework activities over HTTP on loopback; the fake Bot Framework also plays Azure AD
(tokens) and Microsoft Graph (the member's groups, and the member when the connector does not know it).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.teams.directory import TeamsDirectory
from adapters.teams.tokens import AppTokens
from core.model import Role, User
from core.principal import Scope
from tests.support import STANDARD_DOC, provision
from tests.teams_support import (
    APP_ID,
    APP_PASSWORD,
    BOT_TENANT,
    GRAPH_ACCESS_TOKEN,
    TeamsBot,
    card_text,
    message,
    running_bot,
)

USERS = "0f8fad5b-d9cb-469f-a165-70867728950e"
ADMINS = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
OTHER = "ffffffff-0000-4000-8000-000000000000"  # a group nobody maps

GROUPS_DOC = STANDARD_DOC.replace(
    "    email_domains: [acme.example]\n",
    "    email_domains: [acme.example]\n"
    f"    teams_groups: [{{group_id: {USERS}, role: user}}, {{group_id: {ADMINS}, role: company_admin}}]\n",
)


@pytest.fixture
async def bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TeamsBot]:
    async with running_bot(tmp_path, monkeypatch) as running:
        yield running


def _frank(bot: TeamsBot, *, email: str = "frank@acme.example", groups: tuple[str, ...] = (USERS,),
           in_conversation: bool = True) -> None:
    """Frank is in Azure AD and in these groups; pvebot has never heard of him."""
    if in_conversation:
        bot.fake.members["aad-frank"] = {"id": "29:aad-frank", "aadObjectId": "aad-frank", "name": "Frank Fox",
                                         "email": email, "userPrincipalName": email}
    bot.fake.member_groups["aad-frank"] = list(groups)


async def _whoami(bot: TeamsBot, user: str = "aad-frank") -> str:
    status, _ = await bot.post(message(bot.fake, "pve whoami", user=user))
    assert status == 200
    return card_text(bot.fake.activities("POST")[-1].body)


def _user(bot: TeamsBot, email: str) -> User | None:
    with bot.app.storage.uow_factory(Scope.everything()) as uow:
        return uow.users.by_email(email)


def _graph_tokens(bot: TeamsBot) -> list[tuple[str, str]]:
    return [t for t in bot.fake.tokens_issued if t[1] == bot.fake.graph_scope]


async def test_a_member_of_a_mapped_group_is_created_linked_and_told(bot: TeamsBot) -> None:
    provision(bot.app.storage, GROUPS_DOC)
    _frank(bot)

    text = await _whoami(bot)

    assert "linked your account to pvebot as frank@acme.example" in text
    assert "Frank Fox" in text and "Acme Corp" in text
    frank = _user(bot, "frank@acme.example")
    assert frank is not None and (frank.name, frank.role, frank.active) == ("Frank Fox", Role.USER, True)
    with bot.app.storage.uow_factory(Scope.everything()) as uow:
        acme = uow.companies.by_slug("acme")
        assert acme is not None and frank.company_id == acme.id
        [linked] = uow.identities.for_user(frank.id or 0)
        trail = {e.action: e for e in uow.audit.query(actor="frank@acme.example")}
    assert (linked.platform, linked.workspace_id, linked.platform_user_id) == ("teams", "tenant-acme", "aad-frank")
    assert trail["user.created"].detail == {"how": "directory group", "group_id": USERS, "role": "user"}
    assert trail["identity.linked"].detail == {"how": "directory group"}
    # one Graph call, with a Graph token for the member's tenant
    [groups] = bot.fake.graph_requests()
    assert (groups.method, groups.path, groups.body) == (
        "POST", "/graph/v1.0/users/aad-frank/getMemberGroups", {"securityEnabledOnly": False})
    assert groups.authorization == f"Bearer {GRAPH_ACCESS_TOKEN}"
    assert _graph_tokens(bot) == [("tenant-acme", bot.fake.graph_scope)]

    # the next message is an ordinary one: no Graph, no "linked"
    text = await _whoami(bot)
    assert "linked your account" not in text and "Frank Fox" in text
    assert len(bot.fake.graph_requests()) == 1


async def test_the_most_privileged_mapped_role_wins(bot: TeamsBot) -> None:
    provision(bot.app.storage, GROUPS_DOC)
    _frank(bot, groups=(USERS, OTHER, ADMINS.upper()))
    text = await _whoami(bot)
    assert "linked your account" in text and "company_admin" in text
    frank = _user(bot, "frank@acme.example")
    assert frank is not None and frank.role is Role.COMPANY_ADMIN


async def test_email_and_name_come_from_graph_when_the_conversation_does_not_know_the_member(bot: TeamsBot) -> None:
    provision(bot.app.storage, GROUPS_DOC)
    _frank(bot, in_conversation=False)
    bot.fake.graph_users["aad-frank"] = {"mail": "Frank@Acme.example", "userPrincipalName": "frank@acme.example",
                                         "displayName": "Frank (Graph)", "jobTitle": "not asked for"}
    text = await _whoami(bot)
    assert "linked your account to pvebot as frank@acme.example" in text
    frank = _user(bot, "frank@acme.example")
    assert frank is not None and (frank.name, frank.role) == ("Frank (Graph)", Role.USER)
    assert {c.path for c in bot.fake.graph_requests()} == {
        "/graph/v1.0/users/aad-frank?$select=mail,userPrincipalName,displayName",
        "/graph/v1.0/users/aad-frank/getMemberGroups"}


@pytest.mark.parametrize(("email", "groups"), [
    ("frank@acme.example", (OTHER,)),  # in no mapped group
    ("frank@acme.example", ()),  # in no group at all
    ("frank@initech.example", (USERS,)),  # a mapped group, but not the company's email domain
])
async def test_without_a_mapped_group_for_the_email_domain_nobody_is_linked(
    bot: TeamsBot, email: str, groups: tuple[str, ...]
) -> None:
    provision(bot.app.storage, GROUPS_DOC)
    _frank(bot, email=email, groups=groups)
    assert "you are not linked to pvebot" in await _whoami(bot)
    assert _user(bot, email) is None


async def test_a_group_mapped_by_two_companies_of_the_member_s_domain_links_nobody(bot: TeamsBot) -> None:
    provision(bot.app.storage, GROUPS_DOC)
    # provisioning refuses a group for two companies; a database edited by hand is not trusted either
    with bot.app.storage.uow_factory(Scope.everything()) as uow:
        globex = uow.companies.by_slug("globex")
        assert globex is not None
        globex.email_domains = ["globex.example", "acme.example"]
        globex.directory_groups = [{"group_id": USERS, "role": "user"}]
        uow.commit()
    _frank(bot)
    assert "you are not linked to pvebot" in await _whoami(bot)
    assert _user(bot, "frank@acme.example") is None


@pytest.mark.parametrize("status", [503, 403])
async def test_graph_failing_links_nobody_and_answers_normally(
    bot: TeamsBot, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    provision(bot.app.storage, GROUPS_DOC)
    _frank(bot)
    bot.fake.graph_status = status
    with caplog.at_level(logging.INFO):
        assert "you are not linked to pvebot" in await _whoami(bot)
    assert _user(bot, "frank@acme.example") is None
    assert f"Microsoft Graph getMemberGroups answered HTTP {status}" in caplog.text
    assert GRAPH_ACCESS_TOKEN not in caplog.text and APP_PASSWORD not in caplog.text


async def test_no_graph_call_when_no_company_maps_groups(bot: TeamsBot) -> None:
    _frank(bot)  # the standard provisioning maps no group
    assert "you are not linked to pvebot" in await _whoami(bot)
    assert bot.fake.graph_requests() == [] and _graph_tokens(bot) == []


async def test_an_existing_user_keeps_the_provisioned_role(bot: TeamsBot) -> None:
    provision(bot.app.storage, GROUPS_DOC)
    # erin is a provisioned company_admin without a Teams identity; she is also in the users group
    bot.fake.members["aad-erin"] = {"id": "29:aad-erin", "aadObjectId": "aad-erin", "email": "erin@acme.example"}
    bot.fake.member_groups["aad-erin"] = [USERS]
    text = await _whoami(bot, "aad-erin")
    assert "linked your account to pvebot as erin@acme.example" in text and "company_admin" in text
    assert bot.fake.graph_requests() == []


# ---- the directory on its own: Graph slow or unreachable -----------------------------------------------------


def _directory(bot: TeamsBot, *, graph_url: str | None = None, timeout: float = 5.0) -> TeamsDirectory:
    tokens = AppTokens(app_id=APP_ID, password=APP_PASSWORD, tenant_id=BOT_TENANT, login_url=bot.fake.login_url)
    return TeamsDirectory(tokens=tokens, graph_url=graph_url or bot.fake.graph_url, timeout=timeout)


def test_a_slow_graph_times_out_to_no_groups(bot: TeamsBot, caplog: pytest.LogCaptureFixture) -> None:
    bot.fake.member_groups["aad-frank"] = [USERS]
    directory = _directory(bot, timeout=0.3)
    assert directory.groups_of("teams", "tenant-acme", "aad-frank") == frozenset({USERS})
    bot.fake.graph_delay = 2.0
    assert directory.groups_of("teams", "tenant-acme", "aad-frank") == frozenset()
    assert "Microsoft Graph getMemberGroups failed (ReadTimeout)" in caplog.text
    assert GRAPH_ACCESS_TOKEN not in caplog.text and GRAPH_ACCESS_TOKEN not in repr(directory)


def test_an_unreachable_graph_or_another_platform_gives_nothing(bot: TeamsBot) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    directory = _directory(bot, graph_url=f"https://127.0.0.1:{closed}")
    assert directory.groups_of("teams", "tenant-acme", "aad-frank") == frozenset()
    assert directory.email_of("teams", "tenant-acme", "aad-frank") is None
    assert directory.name_of("teams", "tenant-acme", "aad-frank") is None
    assert directory.groups_of("slack", "T0ACME", "U0BOB") == frozenset()
    # without an app registration (the emulator mode) there is no Graph to ask
    assert TeamsDirectory(tokens=None, graph_url=bot.fake.graph_url).groups_of("teams", "t", "u") == frozenset()
    assert bot.fake.graph_requests() == []


def test_graph_tokens_are_for_the_graph_host_of_the_cloud() -> None:
    assert TeamsDirectory(tokens=None).graph_scope == "https://graph.microsoft.com/.default"
    assert TeamsDirectory(tokens=None, graph_url="https://graph.microsoft.us/").graph_scope == (
        "https://graph.microsoft.us/.default")
