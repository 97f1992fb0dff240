"""What an operation is: one entry that says everything pvebot needs to offer, approve and run it.

An :class:`Operation` names its permission, the kind of thing it acts on and how that target is
found in the caller's scope (and found again when the job runs), its steps, what an approver must
see, its wording, and whether it needs a second person by default. Commands take their permission,
help line and approval hint from it; the job runner and the approval service only ever ask the
entry, so a new operation is one entry in :mod:`core.services.catalog`, with no branch elsewhere.

A step is a Proxmox call not yet made: the runner first confirms that the guest it acts on is
still the one the request was made for (:class:`core.model.GuestIdentity`), then makes it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from core.model import Cluster, Company, Guest, GuestRef, Job, TaskRef
from core.ports import Hypervisor
from core.principal import Principal
from core.rbac import Perm
from core.services.deps import Deps

log = logging.getLogger(__name__)
# the company id a provider operation's job and approval carry: no company has it (ids start at 1), so no
# company's scope sees them, and only an unrestricted principal (a super_admin) can request or decide them
PROVIDER_COMPANY_ID = 0


class TargetKind(enum.StrEnum):
    GUEST = "guest"
    TEMPLATE = "template"
    BACKUP = "backup volume"
    SCHEDULE = "backup schedule"
    NETWORK = "network"
    NODE = "node"
    CLUSTER = "cluster"
    NONE = "none"


@dataclass(frozen=True)
class Target:
    """What an operation acts on, as found in the caller's scope."""

    kind: TargetKind
    # how people read it: "db-01 (lab/102)"
    label: str
    company: Company | None
    # primitives a job or approval keeps to find it again (for a guest: where it is and which guest)
    record: dict[str, Any]
    cluster: Cluster | None = None
    guest: Guest | None = None
    # the provider's own infrastructure (a cluster's nodes, its SSH keys): no company's, super_admins only
    provider: bool = False
    # how steps reach a target the hypervisor does not (a cluster's nodes over SSH:
    # core.services.cluster_ssh.ClusterSsh), set by the resolver, which has the ports
    reach: object | None = None

    @property
    def company_id(self) -> int | None:
        if self.provider:
            return PROVIDER_COMPANY_ID
        return None if self.company is None else self.company.id


class Resolver(Protocol):
    """Finds an operation's target from what the user typed, and again from what a job stored."""

    kind: TargetKind

    def resolve(self, deps: Deps, principal: Principal, ref: str) -> Target:
        """The target ``ref`` names in ``principal``'s scope; out of scope answers like not found."""
        ...

    def recheck(self, deps: Deps, principal: Principal, record: dict[str, Any], *, company_id: int,
                fresh: bool) -> Target:
        """The stored target as it is now, still in ``company_id``; raises NotFound when it is gone."""
        ...

    def replaced(self, deps: Deps, target: Target) -> str | None:
        """Why ``target`` (rechecked) is not the thing the request was made for, or None when it is."""
        ...


# where a streamed step reports each line of its output as it comes (the runner coalesces the edits)
LineSink = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    """One state-changing call, made by the runner once its target is confirmed.

    A Proxmox call (``call``) returns the task the runner follows; a streamed step (``stream``, a command
    over SSH) does its work itself, reports its output lines to the sink it is given, and raises on failure.
    """

    label: str
    call: Callable[[], TaskRef] | None = None
    # the guest the call changes, whose identity the runner confirms first; None for other targets
    on: GuestRef | None = None
    # a further precondition, checked right before the call (a snapshot is still the one approved)
    check: Callable[[], None] | None = None
    stream: Callable[[LineSink], None] | None = None


StepsFn = Callable[[Hypervisor | None, Target, dict[str, Any]], Iterator[Step]]
# facts about the target taken when the request is made, kept in its params and checked again later
RecordFn = Callable[[Hypervisor | None, Target, dict[str, Any]], dict[str, Any]]
# what an approver must see, label and value, in the order shown
PreviewFn = Callable[[Hypervisor | None, Target, dict[str, Any]], list[tuple[str, str]]]
CheckFn = Callable[[Hypervisor | None, Target, dict[str, Any]], None]
RecheckFn = Callable[[Hypervisor | None, Target, dict[str, Any]], None]
# pvebot's own bookkeeping when the request is made, before it is queued or sent for approval (never a change
# in Proxmox): a VM about to be deleted has the owner of its backups recorded, as its delete card promises
PrepareFn = Callable[[Deps, Principal, Target, dict[str, Any]], None]
ResultFn = Callable[[Target, dict[str, Any]], str]
# checked by the runner before the first step, with what it knows then (a quota, again)
PrecheckFn = Callable[[Deps, Principal, Target, Job], None]


@dataclass(frozen=True)
class Ended:
    """A request that is over: its job settled, or its approval request closed without a job."""

    action: str
    company_id: int
    # the job's (or approval's) stored target and params, as the steps left them
    target: dict[str, Any]
    params: dict[str, Any]
    succeeded: bool


# what an operation does once its request is over (give back what it held, record what it made)
EndedFn = Callable[[Deps, Ended], None]
AtStakeFn = Callable[[list[tuple[str, str]]], str | None]


@dataclass(frozen=True)
class Operation:
    name: str
    perm: Perm
    # what chat says while it runs: "start web-01"
    verb: str
    # the one-line help of its command
    summary: str
    target: Resolver
    steps: StepsFn
    preview: PreviewFn | None = None
    record: RecordFn | None = None
    # raises Conflict when what ``record`` kept no longer holds (asked when an approval is decided)
    still_same: RecheckFn | None = None
    # refuses a request that cannot work, or has nothing to do, before anything is queued or sent for
    # approval (a container has no reset; a running VM needs no start)
    check: CheckFn | None = None
    # the outcome in plain words once every step succeeded
    result: ResultFn | None = None
    precheck: PrecheckFn | None = None
    # steps that undo what earlier steps made when a later one fails, and how to name what is left otherwise
    compensate: StepsFn | None = None
    leftover: ResultFn | None = None
    prepare: PrepareFn | None = None
    # needs a second person unless a company's policy exempts it
    approval: bool = False
    # needs a second person whatever the policy says
    always_approval: bool = False
    # called once when its job settles or its approval request closes without one
    ended: EndedFn | None = None
    # the preview's facts → the one line an approval card highlights: what is destroyed ("2 disks, 164 GB")
    at_stake: AtStakeFn | None = None


def end(op: Operation, deps: Deps, ended: Ended) -> None:
    """Run ``op``'s end hook; its failure is logged, never raised: the request's outcome stands."""
    if op.ended is None:
        return
    try:
        op.ended(deps, ended)
    except Exception:
        log.exception("the end hook of %s failed", op.name)


class Catalog:
    """Every operation by name; the single source of permissions, wording and default approvals."""

    def __init__(self, operations: Iterable[Operation] = ()) -> None:
        self._entries: dict[str, Operation] = {}
        for op in operations:
            self.add(op)

    def add(self, op: Operation) -> None:
        if op.name in self._entries:
            raise ValueError(f"operation {op.name!r} defined twice")
        self._entries[op.name] = op

    def get(self, name: str) -> Operation:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Operation]:
        return iter(sorted(self._entries.values(), key=lambda o: o.name))

    @contextmanager
    def registered(self, op: Operation) -> Iterator[Operation]:
        """``op`` in the catalog for the length of a block (a plug-in, or a test)."""
        self.add(op)
        try:
            yield op
        finally:
            self._entries.pop(op.name, None)

    @property
    def default_approvals(self) -> frozenset[str]:
        return frozenset(o.name for o in self._entries.values() if o.approval or o.always_approval)

    @property
    def mandatory_approvals(self) -> frozenset[str]:
        return frozenset(o.name for o in self._entries.values() if o.always_approval)

    def approval_actions(self, company: Company | None) -> frozenset[str]:
        """The defaults, plus what the company adds, less what it exempts (never a mandatory one)."""
        if company is None:
            return frozenset(self._entries)
        policy = company.approval_policy
        added = frozenset(policy.get("required_for", ()))
        exempt = frozenset(policy.get("exempt", ())) - self.mandatory_approvals
        return (self.default_approvals | added) - exempt

    def needs_approval(self, company: Company | None, name: str) -> bool:
        """Whether ``name`` waits for a second person in ``company`` (no company: always)."""
        return name in self.approval_actions(company)
