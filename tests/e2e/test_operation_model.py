"""An operation is one catalog entry: a new one on a target that is not a VM works end to end from there.

The test defines, in one place, an operation on a Proxmox *node* (its own resolver, steps and
preview) and the chat command that asks for it. Without any change to the job runner, the
approval service or an adapter, it then shows up in ``help`` with its approval hint, is
permission-checked, goes through an approval whose card shows the preview, and runs as a job
whose progress reaches the chat.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from adapters.shell.outbox import OutboxReader
from bot.bootstrap import Storage
from commands.common import outcome_reply
from commands.registry import Args, CommandContext, Param
from core.chat import Reply
from core.errors import InvalidArguments, NotFound
from core.model import JobState, TaskRef
from core.ports import Hypervisor
from core.principal import Principal, Scope
from core.rbac import Perm
from core.services import inventory, jobs, requests
from core.services.catalog import CATALOG
from core.services.deps import Deps
from core.services.operations import Operation, Step, Target, TargetKind
from tests.e2e.test_approvals import ALICE, BOB, CAROL, ERIN, SAM, World, apr, fields, make_world
from tests.fakes import FakeClock


class NodeTarget:
    """A node of a cluster the caller's company uses, named ``cluster/node``; it is theirs to ask about."""

    kind = TargetKind.NODE

    def _find(self, deps: Deps, principal: Principal, ref: str) -> Target:
        cluster_name, _, node = ref.partition("/")
        if not node:
            raise InvalidArguments("name a node as cluster/node")
        view = inventory.view(deps, principal, cluster=cluster_name)
        mine = [o for o in view.guests if o.company_id == principal.company_id]
        if not any(o.guest.node == node for o in view.guests):
            raise NotFound(f"node '{ref}' not found")
        company = view.companies.get(principal.company_id) if principal.company_id is not None else None
        guests = sorted(o.guest.name for o in mine if o.guest.node == node)
        return Target(kind=self.kind, label=f"node {ref}", company=company, cluster=view.clusters[0],
                      record={"cluster": cluster_name, "node": node, "label": f"node {ref}", "guests": guests})

    def resolve(self, deps: Deps, principal: Principal, ref: str) -> Target:
        return self._find(deps, principal, ref)

    def recheck(self, deps: Deps, principal: Principal, record: dict[str, Any], *, company_id: int,
                fresh: bool) -> Target:
        return self._find(deps, principal, f"{record['cluster']}/{record['node']}")

    def replaced(self, deps: Deps, target: Target) -> str | None:
        return None


def _drain_steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    node = target.record["node"]
    for guest in target.record["guests"]:
        # a node-level task per guest, as a migration would be
        yield Step(f"move {guest}", lambda g=guest: TaskRef(
            cluster=target.record["cluster"], node=node,
            upid=f"UPID:{node}:0000ABCD:00000000:00000000:qmigrate:{g}:x@pve!t:"))


def _drain_preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    return [("Guests moved", ", ".join(target.record["guests"]) or "none"), ("Node", target.record["node"])]


DRAIN = Operation("node.drain", Perm.USER_MANAGE, "drain", "Move your guests off a node.", NodeTarget(),
                  _drain_steps, preview=_drain_preview, approval=True,
                  result=lambda target, params: f"{target.label} holds none of your guests now")


def node_drain(args: Args, ctx: CommandContext) -> Reply:
    """Ask for a node to be drained."""
    outcome = requests.operate(ctx.deps, ctx.principal, action="node.drain", ref=args["node"],
                               conversation=ctx.conversation, request_id=ctx.request_id)
    return outcome_reply(ctx, outcome, f"node drain {args['node']}")


@pytest.fixture
def drained(storage: Storage, clock: FakeClock) -> Iterator[World]:
    with CATALOG.registered(DRAIN):
        world = make_world(storage, clock)
        world.app.dispatcher.registry.command("node drain", operation="node.drain", args=(Param("node"),))(node_drain)
        yield world


def test_a_new_operation_on_a_node_is_offered_checked_approved_and_run(drained: World) -> None:
    world = drained
    help_text = world.chat.run("help", as_=ALICE).plain_text()
    assert "node drain <node>" in help_text and "Move your guests off a node. (needs approval)" in help_text
    assert "node drain" not in world.chat.run("help", as_=BOB).plain_text()  # the role lacks the permission

    assert "cannot use 'node drain'" in world.chat.run("node drain lab/pve1", as_=BOB).text
    assert "cannot use 'node drain'" in world.chat.run("node drain lab/pve1", as_=SAM).text

    card = world.chat.run("node drain lab/pve1", as_=ALICE)
    shown = fields(card)
    assert shown["Action"] == "node.drain"
    assert shown["Target"] == "node lab/pve1"
    assert shown["Guests moved"] == "db-01, web-01"
    # another company's admin asking the same sees only their own guests in the preview
    assert fields(world.chat.run("node drain lab/pve1", as_=CAROL))["Guests moved"] == "gx-01"

    answer = world.chat.run(f"approve {apr(card)}", as_=ERIN)
    assert answer.text.startswith("Approved by Erin Admin") and "queued" in answer.text
    assert world.run_queue() == ["succeeded"]
    [job] = [j for j in world.jobs() if j.action == "node.drain"]
    assert job.result == "node lab/pve1 holds none of your guests now"

    shown_in_chat = [e.reply.plain_text() for e in OutboxReader(world.storage.engine,
                                                                 world.chat.conversation.channel).poll()]
    assert any("running move db-01" in text for text in shown_in_chat), shown_in_chat
    assert any("(done in" in text and "holds none of your guests" in text for text in shown_in_chat)


def test_a_company_that_exempts_it_runs_it_at_once(drained: World) -> None:
    world = drained
    with world.app.deps.uow_factory(Scope.everything()) as uow:
        acme = uow.companies.by_slug("acme")
        assert acme is not None
        acme.approval_policy = {**acme.approval_policy, "exempt": ["node.drain"]}
        uow.commit()
    assert "(needs approval)" not in [line for line in world.chat.run("help", as_=ALICE).plain_text().splitlines()
                                      if "node drain" in line][0]
    reply = world.chat.run("node drain lab/pve1", as_=ALICE)
    assert "queued" in reply.text
    assert world.run_queue() == ["succeeded"]



def test_a_job_settled_under_it_starts_no_further_step(drained: World) -> None:
    """A job another process settled while it ran (a reaper, a process stopping) keeps that verdict and
    starts nothing more in Proxmox: the user has read it was settled."""
    world, deps = drained, drained.app.deps
    ran: list[str] = []

    def first(line: Callable[[str], None]) -> None:
        ran.append("first")
        # what a reaper does to a job whose heartbeat it took for lost, while the job still runs
        with deps.uow_factory(Scope.everything()) as uow:
            [job_id] = [j.id for j in uow.jobs.list(states=[JobState.RUNNING])]
            assert uow.jobs.settle(job_id, expected=[JobState.RUNNING], to=JobState.UNKNOWN,
                                   at=deps.clock.now(), result="settled by the reaper")
            uow.commit()
        line("half-way")

    def steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
        yield Step("first half", stream=first)
        yield Step("second half", stream=lambda line: ran.append("second"))

    sweep = Operation("node.sweep", Perm.USER_MANAGE, "sweep", "Sweep a node in two halves.", NodeTarget(), steps)
    with CATALOG.registered(sweep):
        with deps.uow_factory(Scope.everything()) as uow:
            alice = uow.users.by_email(ALICE)
        assert alice is not None
        outcome = requests.operate(deps, Principal.of(alice), action="node.sweep", ref="lab/pve1",
                                   conversation=world.chat.conversation, request_id="sweep-1")
        assert outcome.job is not None
        assert jobs.run(deps, outcome.job.id) == "unknown"
    assert ran == ["first"]
    [job] = [j for j in world.jobs() if j.action == "node.sweep"]
    assert (job.state, job.result) == (JobState.UNKNOWN, "settled by the reaper")
