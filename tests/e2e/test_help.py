"""help lists exactly the commands each role may use, each with its usage and one-line summary."""

from __future__ import annotations

import pytest

from bot.bootstrap import Storage
from commands import build_registry
from core.chat import Reply
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


def _listed(reply: Reply) -> dict[str, str]:
    return {item.label: item.value for section in reply.sections for item in section.items}


@pytest.mark.parametrize("role", list(Role))
def test_help_lists_exactly_what_the_role_may_use(chat: ChatDriver, role: Role) -> None:
    registry = build_registry()
    expected = {c.usage for c in registry if c.permission is None or allows(role, c.permission)}
    reply = chat.run("help", as_=AS_ROLE[role])
    assert reply.table is None and reply.sections
    top = _listed(reply)
    groups = {c.group for c in registry if c.usage in expected}
    # every command is either on the first page with its usage, or named in its group's line
    listed = {usage for usage in top if usage in expected}
    assert set(top) - listed <= groups
    for group in set(top) - listed:
        names = top[group].split(" · ")
        shown = _listed(chat.run(f"help {group}", as_=AS_ROLE[role]))
        assert sorted(u.split(" <")[0].split(" [")[0].removeprefix(group + " ") for u in shown) == sorted(names)
        listed |= set(shown)
    assert listed == expected
    assert all(summary for summary in top.values())


def test_help_is_short_and_the_long_groups_have_their_own_page(chat: ChatDriver) -> None:
    reply = chat.run("help", as_="root@host.example")
    lines = reply.plain_text().splitlines()
    assert len(lines) < 40, lines  # 49 commands, one screen
    assert "backup" in _listed(reply) and "help backup" not in _listed(reply)
    backup = chat.run("help backup", as_="root@host.example")
    assert any(u.startswith("backup schedule create <name>") for u in _listed(backup))
    assert backup.title == "pvebot commands: backup"


def test_every_command_has_a_summary_and_a_usage_line() -> None:
    registry = build_registry()
    assert len(registry) >= 20
    for spec in registry:
        assert spec.summary.endswith(".") and spec.usage.startswith(spec.name), spec.name


def test_help_for_a_group(chat: ChatDriver) -> None:
    reply = chat.run("help snapshot", as_="sam@host.example")
    assert [usage.split(" <")[0] for usage in _listed(reply)] == ["snapshot list"]  # read-only role
    assert "no command or group 'backupz'" in chat.run("help backupz", as_="bob@acme.example").text


# replies that point at another command: (the command, the one it points at, the words that point)
POINTERS = [
    ("backup schedule list", "backup schedule create", "create one with backup schedule create"),
    ("notify list", "notify subscribe", "notify subscribe"),
    ("template list", "vm create", "Clone one with: vm create"),
]


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(("command", "pointed", "words"), POINTERS)
def test_a_reply_points_only_at_commands_the_role_may_use(
    sqlite_url: str, clock: FakeClock, role: Role, command: str, pointed: str, words: str
) -> None:
    from tests.support import make_storage

    storage = make_storage(sqlite_url, clock=clock)
    provision(storage)
    hypervisors = FakeHypervisors()
    hypervisors.cluster("lab").add(9000, "tmpl-debian-12", pool="acme", template=True)
    chat = ChatDriver(test_app(storage, hypervisors=hypervisors, queue=FakeQueue()))
    registry = build_registry()
    spec = registry.get(pointed)
    assert spec is not None and spec.permission is not None
    may_point = allows(role, spec.permission)
    text = chat.run(command, as_=AS_ROLE[role]).plain_text()
    assert "❌" not in text, text
    assert (words in text) == may_point, (role, text)


@pytest.mark.parametrize("role", list(Role))
def test_a_mistyped_command_is_answered_with_commands_the_role_may_use(chat: ChatDriver, role: Role) -> None:
    registry = build_registry()
    usable = {c.name for c in registry if c.permission is None or allows(role, c.permission)}
    for typed in ("vm strat web-01", "backup schedule crate x", "net shwo acme-prod", "aprove apr-x"):
        text = chat.run(typed, as_=AS_ROLE[role]).plain_text()
        suggested = text.split("Did you mean: ", 1)[1].rstrip("?").split(", ") if "Did you mean" in text else []
        assert set(suggested) <= usable, (role, typed, suggested)


def test_help_for_one_command_or_the_words_of_a_group(chat: ChatDriver) -> None:
    one = chat.run("help vm start", as_="bob@acme.example")
    assert list(_listed(one)) == ["vm start <vm>"]
    schedule = _listed(chat.run("help backup  Schedule", as_="root@host.example"))
    assert schedule and all(usage.startswith("backup schedule ") for usage in schedule)
    assert "backup now" not in " ".join(schedule)
    text = chat.run("help vm frobnicate", as_="bob@acme.example").text
    assert "no command or group 'vm frobnicate'" in text


@pytest.mark.parametrize("typed", ["vm create --help", "vm create web-09 -h", "VM CREATE --HELP"])
def test_help_flag_on_a_command_shows_its_usage_and_runs_nothing(chat: ChatDriver, typed: str) -> None:
    reply = chat.run(typed, as_="bob@acme.example")
    assert reply.title == "pvebot commands: vm create"
    assert list(_listed(reply)) == [next(c.usage for c in build_registry() if c.name == "vm create")]
    assert "❌" not in reply.plain_text() and not chat.run("job list", as_="bob@acme.example").table


def test_help_flag_on_a_command_the_role_may_not_use_says_so(chat: ChatDriver) -> None:
    # a user's help does not list the command; asking for its usage says it is not theirs
    text = chat.run("cluster status lab --help", as_="bob@acme.example").plain_text()
    assert "no command or group 'cluster status' for your role" in text
    assert chat.run("help --help", as_="bob@acme.example").title == "pvebot commands"
