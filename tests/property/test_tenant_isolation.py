"""Tenant isolation as a property: over generated tenants, nobody reads or changes outside their scope.

Hypothesis builds companies, users of all four roles (salespersons assigned to random
subsets), clusters with bound and unbound pools, guests in them, and jobs, approval
requests and audit events per company. Then, for every principal, every scoped repository
and every service entry point that takes a principal must:

* return exactly what lies inside ``principal.scope`` (nothing outside, nothing missing);
* answer anything outside the scope like something that does not exist (``NotFound``,
  never ``PermissionDenied``), so nobody learns what other companies have;
* allow or deny exactly as ``core.rbac.MATRIX`` says, inside the scope;
* change nothing outside the scope (every write is checked against a snapshot).

Each example runs on a fresh in-memory SQLite database (the repositories' SQL is the same
on MariaDB; ``tests/integration/test_repositories.py`` runs it there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import StaticPool

from adapters.sql.tables import metadata
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from core import rbac
from core.errors import BotError, Conflict, NotFound, PermissionDenied
from core.model import (
    ApprovalRequest,
    ApprovalState,
    AuditEvent,
    Cluster,
    Company,
    Job,
    JobState,
    PoolBinding,
    Role,
    User,
)
from core.principal import Principal, Scope
from core.services import approvals, audit, inventory, jobs
from core.services.deps import Deps
from tests.fakes import FakeClock, FakeHypervisors, FakeNotifier, FakeQueue

NOW = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


# ---- the generated world ------------------------------------------------------------------


@dataclass(frozen=True)
class UserPlan:
    role: Role
    home: int | None  # company index
    assigned: frozenset[int]


@dataclass(frozen=True)
class WorldPlan:
    companies: int
    clusters: int
    # (owning company index or None for an unbound pool, cluster index)
    pools: tuple[tuple[int | None, int], ...]
    users: tuple[UserPlan, ...]
    # per company: (state, actor user index)
    jobs: tuple[tuple[int, JobState, int], ...]
    # per company: (state, requester user index)
    approvals: tuple[tuple[int, ApprovalState, int], ...]
    # company index or None for a global event
    events: tuple[int | None, ...]


@st.composite
def worlds(draw: st.DrawFn) -> WorldPlan:
    n = draw(st.integers(1, 4), label="companies")
    n_clusters = draw(st.integers(1, 3), label="clusters")
    company = st.integers(0, n - 1)
    maybe_company = st.none() | company
    subset = st.frozensets(company)
    cluster = st.integers(0, n_clusters - 1)
    pools = draw(st.lists(st.tuples(maybe_company, cluster), max_size=2 * n + 1))

    def plan(role: Role, home: int | None, assigned: frozenset[int]) -> UserPlan:
        if role is Role.SUPER_ADMIN:
            return UserPlan(role, None, frozenset())
        if role is Role.SALESPERSON:
            return UserPlan(role, home, assigned)
        return UserPlan(role, home, frozenset())

    # every role at least once (a company_admin always has a company), then a few more of any kind
    users = [
        plan(Role.SUPER_ADMIN, None, frozenset()),
        plan(Role.COMPANY_ADMIN, draw(company), frozenset()),
        plan(Role.USER, draw(maybe_company), frozenset()),
        plan(Role.SALESPERSON, draw(maybe_company), draw(subset)),
    ]
    users += [plan(r, h, a) for r, h, a in draw(st.lists(st.tuples(st.sampled_from(Role), maybe_company, subset),
                                                          max_size=3))]
    user = st.integers(0, len(users) - 1)
    return WorldPlan(
        companies=n,
        clusters=n_clusters,
        pools=tuple(pools),
        users=tuple(users),
        jobs=tuple(draw(st.lists(st.tuples(company, st.sampled_from(JobState), user), max_size=2 * n))),
        approvals=tuple(draw(st.lists(st.tuples(company, st.sampled_from(ApprovalState), user), max_size=2 * n))),
        events=tuple(draw(st.lists(maybe_company, max_size=2 * n))),
    )


@dataclass
class World:
    """The plan made real: ids as the database assigned them, and the fake Proxmox inventory."""

    deps: Deps
    company_ids: list[int]
    principals: list[Principal]
    hypervisors: FakeHypervisors
    # (cluster name, pool) -> owning company id (bound pools only)
    owner: dict[tuple[str, str], int] = field(default_factory=dict)
    cluster_names: list[str] = field(default_factory=list)
    shared_templates: dict[str, set[int]] = field(default_factory=dict)


@contextmanager
def built(plan: WorldPlan) -> Iterator[World]:
    engine = make_engine("sqlite://", poolclass=StaticPool)
    metadata.create_all(engine)
    factory = SqlUnitOfWorkFactory(engine)
    clock = FakeClock(NOW)
    hypervisors = FakeHypervisors()
    deps = Deps(uow_factory=factory, hypervisors=hypervisors, queue=FakeQueue(), notifier=FakeNotifier(), clock=clock)
    try:
        with factory(Scope.everything()) as uow:
            companies = [Company(slug=f"co{i}", name=f"Company {i}") for i in range(plan.companies)]
            for c in companies:
                uow.companies.add(c)
            ids = [c.id for c in companies if c.id is not None]
            clusters = [Cluster(name=f"cl{i}", api_urls=[f"https://10.0.{i}.1:8006"], token_id="pvebot@pve!bot",
                                token_secret_encrypted="not-a-secret", shared_templates=[9000 + i])
                        for i in range(plan.clusters)]
            for cl in clusters:
                uow.clusters.add(cl)
            world = World(deps=deps, company_ids=ids, principals=[], hypervisors=hypervisors,
                          cluster_names=[cl.name for cl in clusters],
                          shared_templates={cl.name: set(cl.shared_templates) for cl in clusters})
            vmid = 100
            for i, (owner, cluster_index) in enumerate(plan.pools):
                cl = clusters[cluster_index]
                pool = f"pool{i}"
                if owner is not None:
                    uow.pool_bindings.add(PoolBinding(company_id=ids[owner], cluster_id=cl.id or 0, pool=pool))
                    world.owner[(cl.name, pool)] = ids[owner]
                hv = hypervisors.cluster(cl.name)
                hv.add(vmid, f"vm{vmid}", pool=pool)
                hv.add(vmid + 1, f"tpl{vmid + 1}", pool=pool, template=True)
                vmid += 2
            for cl in clusters:
                hv = hypervisors.cluster(cl.name)
                hv.add(vmid, f"loose{vmid}", pool=None)  # in no pool: nobody's but a super_admin's
                hv.add(9000 + int(cl.name[2:]), "shared-template", pool=None, template=True)
                hv.add(vmid + 1, "private-template", pool=None, template=True)
                vmid += 2
            users = []
            for i, up in enumerate(plan.users):
                user = User(email=f"u{i}@example.com", name=f"User {i}", role=up.role,
                            company_id=None if up.home is None else ids[up.home],
                            assigned_companies=[companies[a] for a in sorted(up.assigned)])
                uow.users.add(user)
                users.append(user)
            for k, (co, state, actor) in enumerate(plan.jobs):
                uow.jobs.add(Job(id=f"job{k}", request_id=f"rq-job{k}", company_id=ids[co],
                                 actor_user_id=users[actor].id or 0, action="vm.start",
                                 target={"cluster": "cl0", "vmid": 100}, params={}, state=state,
                                 created_at=NOW - timedelta(minutes=k)))
            for k, (co, state, requester) in enumerate(plan.approvals):
                uow.approvals.add(ApprovalRequest(
                    id=f"apr{k}", company_id=ids[co], requester_user_id=users[requester].id or 0,
                    action="vm.delete", target={"cluster": "cl0", "node": "pve1", "vmid": 100}, params={},
                    preview={}, state=state, created_at=NOW - timedelta(minutes=k),
                    expires_at=NOW + timedelta(hours=1), request_id=f"rq-apr{k}"))
            for k, co in enumerate(plan.events):
                uow.audit.append(AuditEvent(at=NOW - timedelta(minutes=k), action="vm.start", actor=f"seed{k}",
                                            company_id=None if co is None else ids[co]))
            uow.commit()
            world.principals = [Principal.of(u) for u in users]
        yield world
    finally:
        engine.dispose()


# ---- what the database holds, read without a scope --------------------------------------


def snapshot(world: World) -> dict[str, Any]:
    """Every row the tests may change, as plain values."""
    with world.deps.uow_factory(Scope.everything()) as uow:
        return {
            "jobs": {j.id: (j.company_id, j.state, j.cancel_requested, j.finished_at)
                     for j in uow.jobs.list(limit=999)},
            "approvals": {a.id: (a.company_id, a.state, a.decided_by_user_id)
                          for a in uow.approvals.list(limit=999)},
            "bindings": sorted((b.company_id, b.cluster_id, b.pool) for b in uow.pool_bindings.list()),
            "companies": sorted((c.id, c.slug) for c in uow.companies.list()),
            "users": sorted((u.id, u.company_id, u.role.value) for u in uow.users.list()),
            "clusters": sorted((c.id, c.name) for c in uow.clusters.list()),
            "audit": [(e.id, e.company_id) for e in uow.audit.query(limit=10_000)],
        }


def expect_outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", call()
    except NotFound:
        return "not_found", None
    except PermissionDenied:
        return "denied", None
    except Conflict:
        return "conflict", None


def guarded(p: Principal, perm: rbac.Perm, company_id: int) -> str | None:
    """What a scoped, permission-checked call on company ``company_id``'s thing must answer."""
    if not p.scope.contains(company_id):
        return "not_found"
    if perm not in rbac.MATRIX[p.role]:
        return "denied"
    return None


# ---- the property -------------------------------------------------------------------------


def check_repositories(world: World, p: Principal, before: dict[str, Any]) -> None:
    sees = p.scope.contains
    with world.deps.uow_factory(p.scope) as uow:
        assert {c.id for c in uow.companies.list()} == {i for i, _ in before["companies"] if sees(i)}
        for company_id in world.company_ids:
            assert (uow.companies.get(company_id) is not None) == sees(company_id)
            assert (uow.companies.by_slug(f"co{world.company_ids.index(company_id)}") is not None) == sees(company_id)
        assert {u.id for u in uow.users.list()} == {i for i, co, _ in before["users"] if sees(co)}
        for user_id, company_id, _ in before["users"]:
            assert (uow.users.get(user_id) is not None) == sees(company_id)
        bound_clusters = {cl for co, cl, _ in before["bindings"] if sees(co)}
        visible_clusters = {i for i, _ in before["clusters"] if p.scope.unrestricted or i in bound_clusters}
        assert {c.id for c in uow.clusters.list()} == visible_clusters
        for cluster_id, name in before["clusters"]:
            assert (uow.clusters.by_name(name) is not None) == (cluster_id in visible_clusters)
        assert sorted((b.company_id, b.cluster_id, b.pool) for b in uow.pool_bindings.list()) == [
            b for b in before["bindings"] if sees(b[0])]
        events = uow.audit.query(limit=10_000)
        assert [e.id for e in events] == [i for i, co in before["audit"] if p.scope.unrestricted or sees(co)]
        assert {j.id for j in uow.jobs.list(limit=999)} == {i for i, v in before["jobs"].items() if sees(v[0])}
        for job_id, (company_id, *_rest) in before["jobs"].items():
            assert (uow.jobs.get(job_id) is not None) == sees(company_id)
            assert (uow.jobs.by_request(f"rq-{job_id}") is not None) == sees(company_id)
        stale = uow.jobs.stale(heartbeat_before=NOW + timedelta(days=1))
        assert all(sees(j.company_id) for j in stale)
        assert {a.id for a in uow.approvals.list(limit=999)} == {
            i for i, v in before["approvals"].items() if sees(v[0])}
        for approval_id, (company_id, *_rest) in before["approvals"].items():
            assert (uow.approvals.get(approval_id) is not None) == sees(company_id)
            assert (uow.approvals.by_request(f"rq-{approval_id}") is not None) == sees(company_id)


def check_repository_writes(world: World, p: Principal, before: dict[str, Any]) -> None:
    """Writes outside the scope are refused or find nothing; the transaction is then rolled back."""
    sees = p.scope.contains
    outside = [c for c in world.company_ids if not sees(c)]
    with world.deps.uow_factory(p.scope) as uow:
        for company_id in outside:
            with pytest.raises(NotFound):
                uow.pool_bindings.add(PoolBinding(company_id=company_id, cluster_id=before["clusters"][0][0],
                                                  pool="intruder"))
            with pytest.raises(NotFound):
                uow.users.add(User(email="intruder@example.com", name="I", role=Role.USER, company_id=company_id))
            with pytest.raises(NotFound):
                uow.audit.append(AuditEvent(at=NOW, action="forged", actor="intruder", company_id=company_id))
        for job_id, (company_id, state, *_rest) in before["jobs"].items():
            claimed = uow.jobs.claim(job_id, now=NOW)
            assert claimed == (sees(company_id) and state is JobState.QUEUED)
        for approval_id, (company_id, state, _by) in before["approvals"].items():
            decided = uow.approvals.decide(approval_id, to=ApprovalState.DENIED, by_user_id=p.user_id, at=NOW)
            assert decided == (sees(company_id) and state is ApprovalState.PENDING)
        if not p.scope.unrestricted:
            with pytest.raises(NotFound):
                uow.companies.add(Company(slug="intruder", name="Intruder"))
        # not committed: closing the unit of work rolls every change back
    assert snapshot(world) == before


def check_read_services(world: World, p: Principal, before: dict[str, Any]) -> None:
    sees = p.scope.contains
    deps = world.deps
    # audit: the role decides whether at all, the scope what
    with deps.uow_factory(p.scope) as uow:
        outcome, events = expect_outcome(lambda: audit.query(uow, p, limit=10_000))
        if rbac.allows(p.role, rbac.Perm.AUDIT_READ):
            assert outcome == "ok"
            assert [e.id for e in events] == [i for i, co in before["audit"] if p.scope.unrestricted or sees(co)]
        else:
            assert outcome == "denied"
        for company_id in world.company_ids:
            outcome, events = expect_outcome(lambda c=company_id: audit.query(uow, p, company_id=c, limit=10_000))
            assert outcome == (guarded(p, rbac.Perm.AUDIT_READ, company_id) or "ok")
            if outcome == "ok":
                assert [e.id for e in events] == [i for i, co in before["audit"] if co == company_id]
    # jobs
    for job_id, (company_id, *_rest) in before["jobs"].items():
        outcome, job = expect_outcome(lambda j=job_id: jobs.get(deps, p, j))
        assert outcome == (guarded(p, rbac.Perm.JOB_READ, company_id) or "ok")
        if job is not None:
            assert job.id == job_id and sees(job.company_id)
    outcome, listed = expect_outcome(lambda: jobs.list_jobs(deps, p, limit=999))
    assert outcome == ("ok" if rbac.allows(p.role, rbac.Perm.JOB_READ) else "denied")
    if listed is not None:
        assert {j.id for j in listed} == {i for i, v in before["jobs"].items() if sees(v[0])}
    # approval requests
    for approval_id, (company_id, *_rest) in before["approvals"].items():
        outcome, approval = expect_outcome(lambda a=approval_id: approvals.get(deps, p, a))
        assert outcome == (guarded(p, rbac.Perm.VM_READ, company_id) or "ok")
        if approval is not None:
            assert approval.id == approval_id
    outcome, listed = expect_outcome(lambda: approvals.list_requests(deps, p, include_decided=True))
    assert outcome == ("ok" if rbac.allows(p.role, rbac.Perm.VM_READ) else "denied")
    if listed is not None:
        assert {a.id for a in listed} == {i for i, v in before["approvals"].items() if sees(v[0])}
    # inventory: guests in pools bound to the scope's companies; templates of those pools or shared
    check_inventory(world, p)
    assert snapshot(world) == before


def check_inventory(world: World, p: Principal) -> None:
    outcome, view = expect_outcome(lambda: inventory.view(world.deps, p))
    if not rbac.allows(p.role, rbac.Perm.VM_READ):
        assert outcome == "denied"
        return
    assert outcome == "ok"

    def mine(cluster: str, pool: str | None) -> bool:
        owner = world.owner.get((cluster, pool)) if pool else None
        return owner is not None and p.scope.contains(owner)

    visible_clusters = {cl for cl in world.cluster_names
                        if p.scope.unrestricted or any(c == cl and p.scope.contains(o) for (c, _), o in
                                                       world.owner.items())}
    expected_guests, expected_templates = set(), set()
    for name in visible_clusters:
        for g in world.hypervisors.cluster(name).guests.values():
            if g.template:
                if p.scope.unrestricted or mine(name, g.pool) or g.vmid in world.shared_templates[name]:
                    expected_templates.add((name, g.vmid))
            elif p.scope.unrestricted or mine(name, g.pool):
                expected_guests.add((name, g.vmid))
    assert {(o.cluster.name, o.guest.vmid) for o in view.guests} == expected_guests
    assert {(o.cluster.name, o.guest.vmid) for o in view.templates} == expected_templates
    assert {c.name for c in view.clusters} == visible_clusters
    assert all(p.scope.contains(company_id) for company_id in view.companies)
    assert all(o.company is None or p.scope.contains(o.company_id) for o in view.guests + view.templates)
    for name in world.cluster_names:
        outcome, _ = expect_outcome(lambda n=name: inventory.view(world.deps, p, cluster=n))
        assert outcome == ("ok" if name in visible_clusters else "not_found")


def check_write_services(world: World, p: Principal) -> None:
    """cancel and decide on every job and request: only in scope, only as the matrix allows."""
    deps = world.deps
    for job_id in sorted(snapshot(world)["jobs"]):
        before = snapshot(world)
        company_id, state, *_rest = before["jobs"][job_id]
        outcome, _ = expect_outcome(lambda j=job_id: jobs.cancel(deps, p, j))
        expected = guarded(p, rbac.Perm.JOB_CANCEL, company_id) or ("conflict" if state.finished else "ok")
        assert outcome == expected
        after = snapshot(world)
        if outcome == "ok":
            changed = after["jobs"].pop(job_id)
            before["jobs"].pop(job_id)
            assert changed[1] is JobState.CANCELLED if state is JobState.QUEUED else changed[2] is True
            new_events = after["audit"][len(before["audit"]):]
            # the cancel request, and for a queued job its outcome: both the job's company's
            assert new_events and {co for _, co in new_events} == {company_id}
            after["audit"] = before["audit"]
        assert after == before
    for approval_id in sorted(snapshot(world)["approvals"]):
        before = snapshot(world)
        company_id, state, _by = before["approvals"][approval_id]
        with world.deps.uow_factory(Scope.everything()) as uow:
            request = uow.approvals.get(approval_id)
            assert request is not None
            requester = request.requester_user_id
        outcome, _ = expect_outcome(lambda a=approval_id: approvals.decide(deps, p, a, approve=False, note="no"))
        expected = guarded(p, rbac.Perm.APPROVAL_DECIDE, company_id)
        if expected is None:
            expected = "denied" if requester == p.user_id else (
                "ok" if state is ApprovalState.PENDING else "conflict")
        assert outcome == expected
        after = snapshot(world)
        if outcome == "ok":
            assert after["approvals"].pop(approval_id) == (company_id, ApprovalState.DENIED, p.user_id)
            before["approvals"].pop(approval_id)
            assert [co for _, co in after["audit"][len(before["audit"]):]] == [company_id]
            after["audit"] = before["audit"]
        assert after == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=worlds())
def test_no_principal_reaches_outside_its_scope(plan: WorldPlan) -> None:
    with built(plan) as world:
        before = snapshot(world)
        for p in world.principals:
            check_repositories(world, p, before)
            check_repository_writes(world, p, before)
            check_read_services(world, p, before)
        for p in world.principals:
            check_write_services(world, p)


@settings(max_examples=200, deadline=None)
@given(role=st.sampled_from(Role), perm=st.sampled_from(rbac.Perm), scope=st.frozensets(st.integers(1, 5)),
       company_id=st.none() | st.integers(1, 5))
def test_require_follows_the_matrix_and_hides_other_companies(
    role: Role, perm: rbac.Perm, scope: frozenset[int], company_id: int | None
) -> None:
    p = Principal(user_id=1, email="x@example.com", name="X", role=role, company_id=None,
                  scope=Scope.everything() if role is Role.SUPER_ADMIN else Scope(company_ids=scope))
    try:
        rbac.require(p, perm, company_id)
        outcome = "ok"
    except NotFound:
        outcome = "not_found"
    except PermissionDenied:
        outcome = "denied"
    except BotError:  # pragma: no cover - any other error is a failure below
        outcome = "other"
    if company_id is not None and not p.scope.contains(company_id):
        assert outcome == "not_found"
    else:
        assert outcome == ("ok" if perm in rbac.MATRIX[role] else "denied")
    assert rbac.can(p, perm, company_id) == (outcome == "ok")
