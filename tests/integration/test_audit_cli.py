"""``pvebot admin audit`` prints the whole story of an approval request, from the request to the Proxmox outcome.

The story is made through the dispatcher (as chat users, with a fake Proxmox and queue) on SQLite
and MariaDB; the command line then reads it back from the same database, configured the way an
operator does it: ``PVEBOT_DATABASE_URL`` and ``PVEBOT_SECRET_KEY`` in the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot import cli
from bot.bootstrap import App, Storage
from core.chat import Reply
from core.ids import show_approval, show_job
from core.principal import Scope
from core.services import jobs
from tests.fakes import FakeClock, FakeHypervisors, FakeQueue
from tests.support import ChatDriver, card_approval, provision, test_app

AuditCli = Callable[..., list[str]]

BOB = "bob@acme.example"
ALICE = "alice@acme.example"
ERIN = "erin@acme.example"


@pytest.fixture
def app(storage: Storage) -> App:
    provision(storage)
    hypervisors = FakeHypervisors()
    lab = hypervisors.cluster("lab")
    lab.add(101, "web-01", pool="acme")
    lab.add(102, "db-01", pool="acme", status="stopped")
    return test_app(storage, hypervisors=hypervisors, queue=FakeQueue())


@pytest.fixture
def audit_cli(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> AuditCli:
    """Runs ``pvebot admin audit ARGS`` against the test database; returns its stdout lines."""
    monkeypatch.chdir(tmp_path)  # no stray .env file
    monkeypatch.setenv("PVEBOT_DATABASE_URL", storage.settings.database_url)
    monkeypatch.setenv("PVEBOT_SECRET_KEY", ",".join(storage.settings.secret_keys))
    monkeypatch.setenv("PVEBOT_LOG_LEVEL", "WARNING")

    def run(*args: str) -> list[str]:
        capsys.readouterr()
        assert cli.main(["admin", "audit", *args]) == 0
        return capsys.readouterr().out.splitlines()

    return run


def apr(reply: Reply) -> str:
    approval_id = card_approval(reply)
    assert approval_id is not None, reply.plain_text()
    return approval_id


def test_the_full_trail_of_one_request(app: App, clock: FakeClock, audit_cli: AuditCli) -> None:
    chat = ChatDriver(app)
    approval_id = apr(chat.run("vm delete db-01 --reason 'replaced by db-02'", as_=BOB))
    clock.advance(minutes=4)
    chat.run(f"approve {show_approval(approval_id)}", as_=ALICE)
    clock.advance(minutes=1)
    [(_, job_id, _)] = app.deps.queue.enqueued  # type: ignore[attr-defined]
    assert jobs.run(app.deps, job_id) == "succeeded"

    lines = audit_cli("--company", "acme")

    label, job = show_approval(approval_id), show_job(job_id)
    story = [line for line in lines if label in line or job in line]
    assert story == [
        f"2026-11-21 09:00:00Z {BOB} approval.requested {label} vm.delete db-01 (lab/102) [ok] "
        "reason=replaced by db-02",
        f"2026-11-21 09:04:00Z {ALICE} approval.approved {label} vm.delete [ok]",
        f"2026-11-21 09:04:00Z {BOB} vm.delete db-01 (lab/102) [queued] job={job}",
        f"2026-11-21 09:04:00Z {ALICE} command approve {label} [ok] platform=slack",
        f"2026-11-21 09:05:00Z system approval.executed {label} vm.delete [ok] job={job}",
        f"2026-11-21 09:05:00Z system vm.delete delete db-01 (lab/102) [succeeded] job={job} "
        "result=db-01 deleted with its disks",
    ]
    # the command that asked is there too, as typed
    assert f"2026-11-21 09:00:00Z {BOB} command vm delete db-01 --reason 'replaced by db-02' [ok] platform=slack" \
        in lines
    # an approver's view: only what alice did
    assert all(f" {ALICE} " in line for line in audit_cli("--user", ALICE))


def test_denied_and_expired_requests_are_in_the_trail(app: App, clock: FakeClock, audit_cli: AuditCli) -> None:
    chat = ChatDriver(app)
    denied = show_approval(apr(chat.run("vm stop web-01", as_=BOB)))
    expired = show_approval(apr(chat.run("vm reset web-01", as_=BOB)))
    chat.run(f"deny {denied} not during business hours", as_=ERIN)
    clock.advance(minutes=31)
    chat.run("approval list", as_=ALICE)  # expires what is due

    lines = audit_cli()

    assert [line for line in lines if denied in line and "approval." in line] == [
        f"2026-11-21 09:00:00Z {BOB} approval.requested {denied} vm.stop web-01 (lab/101) [ok]",
        f"2026-11-21 09:00:00Z {ERIN} approval.denied {denied} vm.stop [ok] note=not during business hours",
    ]
    assert [line for line in lines if expired in line and "approval." in line] == [
        f"2026-11-21 09:00:00Z {BOB} approval.requested {expired} vm.reset web-01 (lab/101) [ok]",
        f"2026-11-21 09:31:00Z system approval.expired {expired} vm.reset [ok]",
    ]
    with app.deps.uow_factory(Scope.everything()) as uow:
        assert uow.jobs.list(limit=10) == []  # neither ran


def test_another_companys_trail_holds_none_of_it(app: App, audit_cli: AuditCli) -> None:
    label = show_approval(apr(ChatDriver(app).run("vm stop web-01", as_=BOB)))

    assert not [line for line in audit_cli("--company", "globex") if label in line]
    assert [line for line in audit_cli("--company", "acme") if "approval.requested" in line and label in line]
