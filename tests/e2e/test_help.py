"""help lists exactly the commands each role may use, each with its usage and one-line summary."""

from __future__ import annotations

import pytest

from bot.bootstrap import Storage
from commands import build_registry
from core.model import Role
from core.rbac import allows
from tests.fakes import FakeClock, FakeHypervisors, FakeQueue
from tests.support import ChatDriver, provision, test_app

AS_ROLE = {
    Role.SUPER_ADMIN: "root@host.example",
    Role.COMPANY_ADMIN: "alice@acme.example",
    Role.USER: "bob@acme.example",
    Role.SALESPERSON: "sam@host.example",
}


@pytest.fixture
def chat(sqlite_url: str, clock: FakeClock) -> ChatDriver:
    from tests.support import make_storage

    storage: Storage = make_storage(sqlite_url, clock=clock)
    provision(storage)
    return ChatDriver(test_app(storage, hypervisors=FakeHypervisors(), queue=FakeQueue()))


@pytest.mark.parametrize("role", list(Role))
def test_help_lists_exactly_what_the_role_may_use(chat: ChatDriver, role: Role) -> None:
    registry = build_registry()
    reply = chat.run("help", as_=AS_ROLE[role])
    assert reply.table is not None
    listed = {usage for usage, _summary in reply.table.rows}
    expected = {c.usage for c in registry if c.permission is None or allows(role, c.permission)}
    assert listed == expected
    assert all(summary for _usage, summary in reply.table.rows)


def test_every_command_has_a_summary_and_a_usage_line() -> None:
    registry = build_registry()
    assert len(registry) >= 20
    for spec in registry:
        assert spec.summary.endswith(".") and spec.usage.startswith(spec.name), spec.name


def test_help_for_a_group(chat: ChatDriver) -> None:
    reply = chat.run("help snapshot", as_="sam@host.example")
    assert reply.table is not None
    assert [usage.split(" <")[0] for usage, _ in reply.table.rows] == ["snapshot list"]  # read-only role
    assert "no command group 'backupz'" in chat.run("help backupz", as_="bob@acme.example").text
