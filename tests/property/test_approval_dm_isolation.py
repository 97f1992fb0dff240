"""Approval cards by direct message, as a property: they reach only those who may decide, of that company.

A card names a company's VM, its disks and the requester's reason. Hypothesis draws who asks (any
user of either company, the salesperson, the super_admin) for which destructive action on which
guest (acme's or globex's); for every request that was made, the people pvebot opened a direct
message with must be exactly the requester's platform identities of the company's admins and the
super_admins — never the requester, never another company's admin.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.chat import ConversationRef, Reply
from core.model import ApprovalState, ChatIdentity
from core.principal import Scope
from tests.e2e.test_approvals import World, make_world
from tests.fakes import FakeClock
from tests.support import SLACK_IDS, card_approval, make_storage

USERS = sorted(SLACK_IDS)
COMMANDS = ["vm delete web-01", "vm delete db-01", "vm stop web-01", "vm reset gx-01", "vm delete gx-01",
            "snapshot delete web-01 pre-upgrade"]
COMPANY_OF_GUEST = {"web-01": "acme", "db-01": "acme", "gx-01": "globex"}
DECIDERS = {"acme": {"U0ALICE", "U0ERIN", "U0ROOT"}, "globex": {"U0CAROL", "U0ROOT"}}


@dataclass
class RecordingDirect:
    """:class:`core.ports.DirectMessages` that records whom it was asked to reach, and reaches them."""

    opened: list[str] = field(default_factory=list)

    def direct(self, identity: ChatIdentity, *, near: ConversationRef) -> ConversationRef | None:
        self.opened.append(identity.platform_user_id)
        return ConversationRef(platform="slack", channel=f"D{identity.platform_user_id}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, RecordingDirect]]:
    clock = FakeClock()
    path: Path = tmp_path_factory.mktemp("dm")
    built = make_world(make_storage(f"sqlite:///{path / 'dm.db'}", clock=clock), clock)
    direct = RecordingDirect()
    built.app.dispatcher.deps = replace(built.app.deps, direct=direct)  # type: ignore[attr-defined]
    # the requests come from a Slack channel, where the approvers' Slack identities can be reached
    built.chat.conversation = ConversationRef(platform="slack", channel="C0OPS")
    yield built, direct


def _clear(built: World) -> None:
    """Close what is pending: asking again for the same thing would answer with the earlier request."""
    with built.app.deps.uow_factory(Scope.everything()) as uow:
        for approval in uow.approvals.list(states=[ApprovalState.PENDING], limit=1000):
            uow.approvals.decide(approval.id, to=ApprovalState.EXPIRED, by_user_id=0, at=built.clock.now(),
                                 note="cleared")
        uow.commit()


def _ask(built: World, command: str, *, as_: str) -> Reply:
    """Type ``command`` in the Slack channel; its reply is shown there (by a post with no message to point at)."""
    answer = built.chat.ask(command, as_=as_, post=False)
    # the approvers are asked once the requester's card is out, by the one delivery path
    built.app.dispatcher.deliver(answer, lambda reply: None)
    return answer.reply


def test_a_users_request_reaches_each_acme_decider_once(world: tuple[World, RecordingDirect]) -> None:
    built, direct = world
    _clear(built)
    direct.opened.clear()
    assert card_approval(_ask(built, "vm delete web-01", as_="bob@acme.example"))
    assert sorted(direct.opened) == ["U0ALICE", "U0ERIN", "U0ROOT"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(asker=st.sampled_from(USERS), command=st.sampled_from(COMMANDS))
def test_direct_messages_reach_only_the_companys_deciders(world: tuple[World, RecordingDirect], asker: str,
                                                          command: str) -> None:
    built, direct = world
    _clear(built)
    direct.opened.clear()
    reply = _ask(built, command, as_=asker)
    if card_approval(reply) is None:
        assert direct.opened == []  # refused, or run at once: nobody is sent anything
        return
    company = COMPANY_OF_GUEST[command.split()[2]]
    assert set(direct.opened) == DECIDERS[company] - {SLACK_IDS[asker][1]}
    assert len(direct.opened) == len(set(direct.opened))  # one copy a person
