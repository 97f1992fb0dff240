"""Backup runs as events, pulled from the simulator's task history over HTTPS (no webhook involved).

A cluster-wide job is one vzdump task per node; each becomes one event, split per company by
pvebot's pool bindings (a guest in no bound pool only reaches provider channels), with each guest's
outcome, reason, size and time read from the task log. Pulling twice records nothing twice; a run
still going is read once it ends; one process polls a cluster at a time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.sql import migrate
from adapters.sql.uow import make_engine
from bot.bootstrap import Storage
from core.chat import ConversationRef, MessageRef, Reply
from core.model import TaskInfo, Topic
from core.principal import Scope
from core.services import event_sources, notifications, outbox
from core.services.deps import Deps
from tests.e2e.shell_world import World, world
from tests.fakes import FakeHypervisors, FakeNotifier, FakeQueue
from tests.support import mariadb_database, principal, provision

pytestmark = pytest.mark.slow
POLICY = event_sources.PollPolicy(interval=timedelta(seconds=1))


class Recorder:
    """A notifier that keeps what it was asked to post, per channel."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Reply]] = []

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        self.posts.append((conversation.channel, reply))
        return MessageRef(conversation=conversation, message_id=str(len(self.posts)))

    def update(self, message: MessageRef, reply: Reply) -> None:
        raise AssertionError("notifications are never edited")

    def to(self, channel: str) -> list[str]:
        return [r.plain_text() for c, r in self.posts if c == channel]


@pytest.fixture(params=["sqlite", "mariadb"])
def w(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[World, Recorder]]:
    with ExitStack() as stack:
        url = None
        if request.param == "mariadb":
            url = stack.enter_context(mariadb_database())
            engine = make_engine(url)
            migrate.upgrade(engine)
            engine.dispose()
        w = stack.enter_context(world(tmp_path, queue="embedded", task_seconds=0.05, database_url=url))
        recorder = Recorder()
        w.app.notifier.add("slack", recorder)
        w.sim.add_guest(vmid=300, name="orphan-01", node="pve2", status="running")  # in no bound pool
        with w.sim.state.lock:
            w.sim.state.backup_jobs["nightly"] = {"id": "nightly", "schedule": "21:00", "all": "1",
                                                  "storage": "local", "mode": "snapshot"}
        for email, channel, everyone in (("alice@acme.example", "C0ACME", False),
                                         ("carol@globex.example", "C0GLOBEX", False),
                                         ("root@host.example", "C0HOST", True)):
            notifications.subscribe(w.app.deps, principal(w.app.storage, email), topic=Topic.BACKUPS,
                                    channel=f"slack:{channel}", everyone=everyone)
        yield w, recorder


def _finished(w: World, upids: list[str], *, patience: float = 20.0) -> None:
    """Wait for the simulator's tasks to end (bounded: a task that never ends fails the test)."""
    deadline = time.monotonic() + patience
    while True:
        with w.sim.state.lock:
            tasks = w.sim._api.ctx.tasks.tasks
            if all(not tasks[u].running for u in upids):
                return
        assert time.monotonic() < deadline, "the simulator's backup tasks did not end"
        time.sleep(0.02)


def _deliver(w: World) -> None:
    outbox.deliver_due(w.app.deps, policy=outbox.Policy())


def test_a_cluster_wide_run_is_split_per_company_once(w: tuple[World, Recorder]) -> None:
    world_, slack = w
    world_.sim.backup_outcome(101, ("error", "no space left on device"))
    world_.sim.backup_outcome(102, ("warning", "guest agent not running"))
    upids = world_.sim.run_backup_job("nightly")
    assert len(upids) == 2  # one task per node
    _finished(world_, upids)
    deps = world_.app.deps
    assert event_sources.poll(deps, owner="test-a", policy=POLICY) == 2
    assert event_sources.poll(deps, owner="test-a", policy=POLICY) == 0  # the cursor and the seen runs
    _deliver(world_)
    acme, globex, host = slack.to("C0ACME"), slack.to("C0GLOBEX"), slack.to("C0HOST")
    assert len(acme) == 1 and len(globex) == 1 and len(host) == 1  # one digest each for two runs
    text = acme[0]
    assert "web-01" in text and "db-01" in text and "ct-01" in text and "no space left on device" in text
    assert "app-02" not in text and "ct-02" not in text and "orphan-01" not in text
    assert "app-02" in globex[0] and "guest agent not running" in globex[0]
    assert "web-01" not in globex[0] and "orphan-01" not in globex[0]
    # the provider hears of both nodes' runs, with the guest of no company
    assert "2 notifications, 1 failed" in host[0]
    with deps.uow_factory(Scope.everything()) as uow:
        rows = uow.outbox.due(now=deps.clock.now() + timedelta(days=1))
    assert rows == []


def test_one_run_reads_its_size_time_and_reason(w: tuple[World, Recorder]) -> None:
    world_, slack = w
    world_.sim.backup_outcome(101, ("error", "no space left on device"))
    with world_.sim.state.lock:
        world_.sim.state.backup_jobs["acme"] = {"id": "acme", "schedule": "21:00", "vmid": "100,101",
                                               "storage": "local"}
    upids = world_.sim.run_backup_job("acme")
    _finished(world_, upids)
    event_sources.poll(world_.app.deps, owner="test-a", policy=POLICY)
    _deliver(world_)
    (text,) = slack.to("C0ACME")
    assert "1 ok, 1 failed" in text and "00:00:01" in text and ("MiB" in text or "GiB" in text)
    assert "db-01 (lab/101)" in text and "failed" in text and "no space left on device" in text
    assert slack.to("C0GLOBEX") == []  # nothing of globex's in this run


def test_a_run_still_going_is_read_when_it_ends(w: tuple[World, Recorder]) -> None:
    world_, slack = w
    deps = world_.app.deps
    world_.sim._api.ctx.tasks.task_seconds = 0.5
    upids = world_.sim.run_backup_job("nightly")
    assert event_sources.poll(deps, owner="test-a", policy=POLICY) == 0  # running: not yet
    _finished(world_, upids)
    assert event_sources.poll(deps, owner="test-a", policy=POLICY) == 2
    _deliver(world_)
    assert len(slack.to("C0HOST")) == 1


def test_one_process_polls_a_cluster_at_a_time(w: tuple[World, Recorder]) -> None:
    world_, _ = w
    deps = world_.app.deps
    with deps.uow_factory(Scope.everything()) as uow:
        (cluster,) = uow.clusters.list()
    assert event_sources.poll_cluster(deps, cluster, owner="a", policy=POLICY) == 0
    assert event_sources.poll_cluster(deps, cluster, owner="b", policy=POLICY) is None  # a holds it
    assert event_sources.poll_cluster(deps, cluster, owner="a", policy=POLICY) == 0  # a renews it
    event_sources.release(deps, owner="a")
    assert event_sources.poll_cluster(deps, cluster, owner="b", policy=POLICY) == 0
    assert event_sources.poll_cluster(deps, cluster, owner="a", policy=POLICY) is None


def test_forgotten_seen_runs_are_still_sent_once(w: tuple[World, Recorder]) -> None:
    world_, slack = w
    deps = world_.app.deps
    _finished(world_, world_.sim.run_backup_job("nightly"))
    assert event_sources.poll(deps, owner="test-a", policy=POLICY) == 2
    with deps.uow_factory(Scope.everything()) as uow:
        assert uow.event_sources.forget_seen(before=deps.clock.now() + timedelta(seconds=1)) == 2
        uow.commit()
    # the cursor still reaches the runs (it is inclusive): read again, but the outbox's key holds
    assert event_sources.poll(deps, owner="test-a", policy=POLICY) == 2
    _deliver(world_)
    assert len(slack.to("C0ACME")) == 1 and len(slack.to("C0GLOBEX")) == 1 and len(slack.to("C0HOST")) == 1


def test_a_node_with_more_runs_than_a_page_has_every_one_read(storage: Storage) -> None:
    """Proxmox pages a node's task history, newest first: the oldest runs since the cursor are on the last page."""
    provision(storage)
    hypervisors = FakeHypervisors()
    lab = hypervisors.cluster("lab")
    lab.add(101, "web-01", pool="acme")
    lab.history = [TaskInfo(upid=f"UPID:pve1:{i:08X}:vzdump", node="pve1", type="vzdump", id="", user="root@pam",
                            starttime=1_000 + i, endtime=1_001 + i, status="OK") for i in range(1_100)]
    deps = Deps(uow_factory=storage.uow_factory, hypervisors=hypervisors, queue=FakeQueue(), notifier=FakeNotifier(),
                clock=storage.clock)
    with storage.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name("lab")
    assert cluster is not None
    pulled = event_sources.pull_node(deps, cluster, "pve1", since=1_000)
    assert pulled.recorded == 1_100 and pulled.cursor == 2_099


def test_a_one_vm_subscription_names_a_vm_of_the_company_and_hears_only_of_it(w: tuple[World, Recorder]) -> None:
    world_, slack = w
    alice = principal(world_.app.storage, "alice@acme.example")
    deps = world_.app.deps
    # a typo, another company's VM and a VMID of nothing are refused, not kept to match nothing forever
    alice_shell, out = world_.shell("alice@acme.example")
    alice_shell.run(["notify subscribe backups --vm web01", "notify subscribe backups --vm app-02",
                     "notify subscribe backups --vm 999", "notify subscribe jobs --vm lab/100"])
    said = out.getvalue()
    assert "VM 'web01' not found" in said and "VM 'app-02' not found" in said and "VM '999' not found" in said
    assert "now hears about jobs of your company" in said  # cluster/vmid names web-01
    with deps.uow_factory(Scope.everything()) as uow:
        kept = [s.vm for s in uow.subscriptions.list() if s.vm is not None]
    assert kept == ["100"]
    notifications.subscribe(deps, alice, topic=Topic.BACKUPS, channel="slack:C0WEB", vm="lab/100")
    _finished(world_, world_.sim.run_backup_job("nightly"))
    event_sources.poll(deps, owner="test-a", policy=POLICY)
    _deliver(world_)
    (text,) = slack.to("C0WEB")
    assert "web-01 (lab/100)" in text and "db-01" not in text and "app-02" not in text
