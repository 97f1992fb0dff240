"""What a bot process keeps of users and pool ownership stops being used the moment another process changes it.

Two processes are two storages on one database (SQLite file and MariaDB): the "bot" answers
commands and keeps principals and pool ownership between them; the "admin" changes a role, a user's
state or a pool binding as provisioning or the CLI would. The bot's very next command sees it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event

from bot.bootstrap import Storage
from core.chat import Severity
from core.model import Role
from core.principal import Scope
from tests.fakes import FakeClock, FakeHypervisors, FakeQueue
from tests.support import ChatDriver, make_storage, provision, test_app

BOB = "bob@acme.example"


@pytest.fixture
def admin(db_url: str, storage: Storage, clock: FakeClock) -> Iterator[Storage]:
    """Another process on the same database."""
    other = make_storage(db_url, clock=clock)
    yield other
    other.engine.dispose()


@pytest.fixture
def bot(storage: Storage) -> ChatDriver:
    provision(storage)
    hypervisors = FakeHypervisors()
    hypervisors.cluster("lab").add(101, "web-01", pool="acme", status="stopped")
    hypervisors.cluster("lab").add(201, "erp-01", pool="globex")
    return ChatDriver(test_app(storage, hypervisors=hypervisors, queue=FakeQueue()))


def _statements(storage: Storage) -> list[str]:
    seen: list[str] = []
    for engine in storage.uow_factory.engines:  # on MariaDB, the autocommit one's too
        event.listen(engine, "before_cursor_execute", lambda _c, _cur, stmt, *_a: seen.append(stmt))
    return seen


def test_a_repeated_command_reads_the_directory_once(bot: ChatDriver, storage: Storage) -> None:
    bot.run("vm list", as_=BOB)
    seen = _statements(storage)
    assert "web-01" in bot.run("vm list", as_=BOB).plain_text()
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert all("users" not in s.split("FROM", 1)[1].split("WHERE")[0] for s in reads), reads
    assert sum("directory_version" in s for s in reads) == 1  # once, with the principal


def test_a_role_taken_away_elsewhere_counts_at_the_next_command(bot: ChatDriver, admin: Storage) -> None:
    assert bot.run("vm start web-01", as_=BOB).severity is not Severity.ERROR
    with admin.uow_factory(Scope.everything()) as uow:
        user = uow.users.by_email(BOB)
        assert user is not None
        user.active = False
        uow.commit()
    refused = bot.run("vm start web-01", as_=BOB)
    assert refused.severity is Severity.ERROR and "web-01" not in refused.plain_text().split("\n", 1)[0]


def test_a_role_changed_elsewhere_counts_at_the_next_command(bot: ChatDriver, admin: Storage) -> None:
    assert "company_admin" not in bot.run("whoami", as_=BOB).plain_text()
    with admin.uow_factory(Scope.everything()) as uow:
        user = uow.users.by_email(BOB)
        assert user is not None
        user.role = Role.COMPANY_ADMIN
        uow.commit()
    assert "company_admin" in bot.run("whoami", as_=BOB).plain_text()


def test_a_pool_given_to_another_company_leaves_the_old_owner_at_once(bot: ChatDriver, admin: Storage) -> None:
    assert "web-01" in bot.run("vm list", as_=BOB).plain_text()
    with admin.uow_factory(Scope.everything()) as uow:
        globex = uow.companies.by_slug("globex")
        binding = next(b for b in uow.pool_bindings.list() if b.pool == "acme")
        assert globex is not None and globex.id is not None
        binding.company_id = globex.id
        uow.commit()
    assert "web-01" not in bot.run("vm list", as_=BOB).plain_text()
    assert "web-01" in bot.run("vm list", as_="dave@globex.example").plain_text()
