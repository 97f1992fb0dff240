"""Races on MariaDB: many approvers clicking at once, and one click delivered twice, decide exactly once.

Each thread goes through its own dispatcher call (as the Slack and Teams adapters do, one request per
thread), all released together by a barrier. Exactly one wins; that one enqueues exactly one job, and
after the queue has run Proxmox has seen exactly one destructive call. Every other click is told who
decided and when.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bot.bootstrap import App, Storage
from core.chat import CommandRequest, IdentityKey, Reply, Severity
from core.ids import show_approval
from core.model import ApprovalState, GuestRef, GuestStatus
from core.principal import Scope
from core.services import jobs
from tests.fakes import FakeClock, FakeHypervisor, FakeHypervisors, FakeQueue
from tests.support import SLACK_IDS, ChatDriver, card_approval, make_storage, mariadb_database, provision, test_app

pytestmark = pytest.mark.mariadb

N = 16
APPROVERS = ("alice@acme.example", "erin@acme.example", "root@host.example")
NAMES = {"alice@acme.example": "Alice Admin", "erin@acme.example": "Erin Admin", "root@host.example": "Root"}


class SlowHypervisor(FakeHypervisor):
    """A Proxmox that takes ``status_delay`` seconds to answer a status call, as a busy one does."""

    status_delay = 0.0

    def status(self, ref: GuestRef) -> GuestStatus:
        time.sleep(self.status_delay)
        return super().status(ref)


@dataclass
class Race:
    app: App
    chat: ChatDriver
    lab: SlowHypervisor
    queue: FakeQueue


@pytest.fixture
def race() -> Iterator[Race]:
    with mariadb_database() as url:
        storage: Storage = make_storage(url, clock=FakeClock())
        provision(storage)
        hypervisors = FakeHypervisors()
        lab = hypervisors.clusters["lab"] = SlowHypervisor(cluster_name="lab")
        lab.add(101, "web-01", pool="acme")
        lab.add(102, "db-01", pool="acme", status="stopped")
        queue = FakeQueue()
        app = test_app(storage, hypervisors=hypervisors, queue=queue)
        try:
            yield Race(app=app, chat=ChatDriver(app), lab=lab, queue=queue)
        finally:
            storage.engine.dispose()


def click(race: Race, text: str, *, as_: str, request_id: str) -> Reply:
    """One button press as an adapter delivers it: its own request, its own dispatcher call."""
    team, user = SLACK_IDS[as_]
    request = CommandRequest(identity=IdentityKey("slack", team, user), text=text,
                             conversation=race.chat.conversation, request_id=request_id)
    answer = race.app.dispatcher.handle(request)
    race.app.dispatcher.deliver(answer, lambda reply: race.app.notifier.post(race.chat.conversation, reply))
    return answer.reply


def at_once(race: Race, presses: list[tuple[str, str, str]]) -> list[tuple[str, Reply]]:
    """Run every (text, who, request_id) in its own thread, released together; answers in press order."""
    barrier = threading.Barrier(len(presses))
    answers: list[tuple[str, Reply] | None] = [None] * len(presses)
    errors: list[BaseException] = []

    def press(i: int, text: str, who: str, request_id: str) -> None:
        try:
            barrier.wait(timeout=10)
            answers[i] = (who, click(race, text, as_=who, request_id=request_id))
        except BaseException as e:  # reported by the main thread below
            errors.append(e)

    threads = [threading.Thread(target=press, args=(i, *p)) for i, p in enumerate(presses)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def run_queue(race: Race) -> list[str]:
    return [jobs.run(race.app.deps, job_id) for _, job_id, _ in race.queue.enqueued]


def destructive_calls(race: Race) -> list[tuple[str, object]]:
    return [c for c in race.lab.calls if c[0].startswith("qm")]


@pytest.mark.parametrize(("command", "call"), [("vm delete db-01", ("qmdestroy", 102)),
                                               ("vm stop web-01", ("qmstop", 101))])
def test_many_approvers_at_once_run_it_exactly_once(race: Race, command: str, call: tuple[str, int]) -> None:
    card = race.chat.run(command, as_="bob@acme.example")
    approval_id = card_approval(card)
    assert approval_id is not None, card.plain_text()
    label = show_approval(approval_id)

    presses = [(f"approve {label}", APPROVERS[i % 3], f"click-{i}") for i in range(N)]
    answers = at_once(race, presses)

    # the losers are told privately who won; the winner's answer is the decided card
    won = [(who, r) for who, r in answers if not r.private]
    assert len(won) == 1, [r.text for _, r in answers]
    winner, _ = won[0]
    for _, reply in answers:
        if reply.severity is not Severity.SUCCESS:
            assert reply.severity is Severity.ERROR
            assert reply.text.startswith(f"{label} was already approved by {NAMES[winner]} at 2026-11-21 09:00 UTC"), \
                reply.text
    assert len(race.queue.enqueued) == 1
    with race.app.deps.uow_factory(Scope.everything()) as uow:
        assert len(uow.jobs.list(limit=100)) == 1

    assert run_queue(race) == ["succeeded"]
    assert destructive_calls(race) == [call]
    with race.app.deps.uow_factory(Scope.everything()) as uow:
        stored = uow.approvals.get(approval_id)
        decided = [e for e in uow.audit.query(limit=1000) if e.action in ("approval.approved", "approval.denied")]
    assert stored is not None and stored.state is ApprovalState.EXECUTED
    assert [e.actor for e in decided] == [winner]


def test_approve_and_deny_at_once_have_one_outcome(race: Race) -> None:
    card = race.chat.run("vm delete db-01", as_="bob@acme.example")
    approval_id = card_approval(card)
    assert approval_id is not None
    label = show_approval(approval_id)

    presses = [(f"{'approve' if i % 2 else 'deny'} {label}", APPROVERS[i % 3], f"click-{i}") for i in range(N)]
    answers = at_once(race, presses)

    # the losers are told privately who won; the winner's answer is the decided card
    won = [(who, r) for who, r in answers if not r.private]
    assert len(won) == 1, [r.text for _, r in answers]
    winner, winning = won[0]
    verb = "approved" if winning.text.startswith("Approved") else "denied"
    for _, reply in answers:
        if reply is not winning:
            assert reply.text.startswith(f"{label} was already {verb} by {NAMES[winner]} at "), reply.text
    run_queue(race)
    assert len(race.queue.enqueued) == (1 if verb == "approved" else 0)
    assert destructive_calls(race) == ([("qmdestroy", 102)] if verb == "approved" else [])


def test_the_same_click_delivered_twice_decides_once(race: Race) -> None:
    card = race.chat.run("vm stop web-01", as_="bob@acme.example")
    approval_id = card_approval(card)
    assert approval_id is not None
    label = show_approval(approval_id)

    # a platform retry: the very same event (same request id) arrives twice, concurrently
    answers = at_once(race, [(f"approve {label}", "alice@acme.example", "slack-evt-1")] * 2)
    # and once more, late
    late = click(race, f"approve {label}", as_="alice@acme.example", request_id="slack-evt-1")

    won = [r for _, r in answers if r.severity is Severity.SUCCESS]
    lost = [r for _, r in answers if r.severity is not Severity.SUCCESS]
    assert len(won) == 1 and len(lost) == 1, [r.text for _, r in answers]
    assert lost[0].text.startswith(f"{label} was already approved by Alice Admin at 2026-11-21 09:00 UTC")
    assert late.text.startswith(f"{label} was already approved by Alice Admin at 2026-11-21 09:00 UTC")
    assert len(race.queue.enqueued) == 1
    assert run_queue(race) == ["succeeded"]
    assert destructive_calls(race) == [("qmstop", 101)]


def test_the_same_command_delivered_many_times_at_once_makes_one_request(race: Race) -> None:
    # a platform retries while the first delivery still waits for Proxmox's answer to the preview
    race.lab.status_delay = 0.2
    answers = at_once(race, [("vm delete db-01 --reason cleanup", "bob@acme.example", "slack-evt-9")] * N)

    ids = {card_approval(r) for _, r in answers}
    assert len(ids) == 1 and None not in ids, [r.text for _, r in answers]
    with race.app.deps.uow_factory(Scope.everything()) as uow:
        assert [a.id for a in uow.approvals.list(limit=100) if a.request_id == "slack-evt-9"] == list(ids)
        requested = [e for e in uow.audit.query(limit=1000) if e.action == "approval.requested"]
    assert len(requested) == 1
