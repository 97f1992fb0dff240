"""The scoped SQL repositories, each test on SQLite and on MariaDB (the ``storage`` fixture).

One tenant-isolation test per repository: a unit of work opened for a company's scope
sees that company's rows only, answers "none" for another company's, and refuses to write
into another company. ``claim`` and ``decide`` are single conditional UPDATEs: exactly one
caller wins, and never across a scope.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from bot.bootstrap import Storage
from core.errors import ConfigurationError, NotFound
from core.model import (
    ApprovalRequest,
    ApprovalState,
    AuditEvent,
    Cluster,
    Company,
    Job,
    JobBrief,
    JobRoute,
    JobState,
    PoolBinding,
    Role,
    User,
)
from core.principal import Scope
from core.services import audit, jobs
from core.services.deps import Deps
from tests.fakes import FakeClock, FakeHypervisors, FakeNotifier, FakeQueue
from tests.support import STANDARD_DOC, TOKEN_ENV, principal, provision

T0 = datetime(2026, 11, 21, 9, 0, 0, 123456, tzinfo=UTC)

# lab is shared by acme and globex; edge holds only a globex pool; spare holds nobody's
THREE_CLUSTERS = STANDARD_DOC.replace(
    "companies:\n",
    """\
  - name: edge
    api_urls: [https://10.0.0.21:8006]
    token_id: "pvebot@pve!bot"
    token_secret_env: PVE_EDGE_TOKEN
    tls: {verify: false}
  - name: spare
    api_urls: [https://10.0.0.31:8006]
    token_id: "pvebot@pve!bot"
    token_secret_env: PVE_EDGE_TOKEN
    tls: {verify: false}
companies:
""",
).replace("pools: [{cluster: lab, pool: globex}]", "pools: [{cluster: lab, pool: globex}, {cluster: edge, pool: gx}]")


@pytest.fixture
def tenants(storage: Storage) -> dict[str, int]:
    """The standard layout with three clusters; company slug -> id."""
    provision(storage, THREE_CLUSTERS)
    with storage.uow_factory(Scope.everything()) as uow:
        return {c.slug: c.id for c in uow.companies.list() if c.id is not None}


def _job(job_id: str, company_id: int, *, state: JobState = JobState.QUEUED, at: datetime = T0) -> Job:
    return Job(id=job_id, request_id=f"req-{job_id}", company_id=company_id, actor_user_id=1, action="vm.start",
               target={"cluster": "lab", "vmid": 101}, params={}, state=state, created_at=at, summary=job_id)


def _approval(approval_id: str, company_id: int, *, state: ApprovalState = ApprovalState.PENDING) -> ApprovalRequest:
    return ApprovalRequest(id=approval_id, company_id=company_id, requester_user_id=1, action="vm.delete",
                           target={"cluster": "lab", "vmid": 101}, params={}, preview={"disks": []}, state=state,
                           created_at=T0, expires_at=T0 + timedelta(minutes=30), request_id=f"req-{approval_id}")


def test_companies_are_isolated(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert [c.slug for c in uow.companies.list()] == ["acme"]
        assert uow.companies.get(globex) is None
        assert uow.companies.by_slug("globex") is None
        assert uow.companies.get(acme) is not None
        with pytest.raises(NotFound):
            uow.companies.add(Company(slug="initech", name="Initech"))
    with storage.uow_factory(Scope.of()) as uow:
        assert uow.companies.list() == []
    with storage.uow_factory(Scope.everything()) as uow:
        assert [c.slug for c in uow.companies.list()] == ["acme", "globex"]


def test_users_are_isolated(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    carol = principal(storage, "carol@globex.example")
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert [u.email for u in uow.users.list()] == ["alice@acme.example", "bob@acme.example", "erin@acme.example"]
        assert uow.users.get(carol.user_id) is None
        assert uow.users.by_email("carol@globex.example") is None
        assert uow.users.by_email("ROOT@host.example") is None  # super_admins belong to no company
        assert uow.users.by_email("Bob@Acme.Example") is not None
        with pytest.raises(NotFound):
            uow.users.add(User(email="mallory@globex.example", name="M", role=Role.USER, company_id=globex))
        uow.commit()
    with storage.uow_factory(Scope.everything()) as uow:
        assert uow.users.by_email("mallory@globex.example") is None


def test_salesperson_sees_assigned_companies_only(storage: Storage, tenants: dict[str, int]) -> None:
    sam = principal(storage, "sam@host.example")
    assert sam.role is Role.SALESPERSON
    assert sam.scope == Scope.of(tenants["acme"])
    with storage.uow_factory(sam.scope) as uow:
        assert [c.slug for c in uow.companies.list()] == ["acme"]
        assert [c.name for c in uow.clusters.list()] == ["lab"]


def test_clusters_are_seen_through_pool_bindings(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert [c.name for c in uow.clusters.list()] == ["lab"]
        assert uow.clusters.by_name("edge") is None
        assert uow.clusters.by_name("spare") is None
        with pytest.raises(NotFound):
            uow.clusters.add(Cluster(name="rogue", api_urls=["https://10.9.9.9:8006"], token_id="a@pve!b",
                                     token_secret_encrypted="x"))
    with storage.uow_factory(Scope.of(globex)) as uow:
        assert [c.name for c in uow.clusters.list()] == ["edge", "lab"]
        edge = uow.clusters.by_name("edge")
        assert edge is not None and edge.id is not None
        edge_id = edge.id
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert uow.clusters.get(edge_id) is None
    with storage.uow_factory(Scope.of()) as uow:
        assert uow.clusters.list() == []
    with storage.uow_factory(Scope.everything()) as uow:
        assert [c.name for c in uow.clusters.list()] == ["edge", "lab", "spare"]


def test_pool_bindings_are_isolated(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.everything()) as uow:
        spare = uow.clusters.by_name("spare")
        assert spare is not None and spare.id is not None
        theirs = next(b for b in uow.pool_bindings.list() if b.company_id == globex)
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert [(b.company_id, b.pool) for b in uow.pool_bindings.list()] == [(acme, "acme")]
        with pytest.raises(NotFound):
            uow.pool_bindings.add(PoolBinding(company_id=globex, cluster_id=spare.id, pool="sneaky"))
        with pytest.raises(NotFound):
            uow.pool_bindings.remove(theirs)
        uow.commit()
    with storage.uow_factory(Scope.everything()) as uow:
        assert sorted(b.pool for b in uow.pool_bindings.list()) == ["acme", "globex", "gx"]


def test_a_pool_bound_to_two_companies_is_refused(storage: Storage, tenants: dict[str, int]) -> None:
    with storage.uow_factory(Scope.everything()) as uow:
        lab = uow.clusters.by_name("lab")
        assert lab is not None and lab.id is not None
        with pytest.raises(sa.exc.IntegrityError):
            uow.pool_bindings.add(PoolBinding(company_id=tenants["globex"], cluster_id=lab.id, pool="acme"))
    # in one file: the second claim is a validation error naming both places
    twice = THREE_CLUSTERS.replace("{cluster: edge, pool: gx}", "{cluster: lab, pool: acme}")
    with pytest.raises(ConfigurationError, match=r"test.yaml line 27: companies\[1\]\.pools: .* appears twice"):
        provision(storage, twice)
    # across files: globex claims the pool acme already has; the whole apply is refused, nothing changes
    stolen = "companies:\n  - slug: globex\n    name: Globex\n    pools: [{cluster: lab, pool: acme}]\n"
    with pytest.raises(ConfigurationError, match=r"line 4: companies\[0\]\.pools\[0\]: pool lab/acme already "):
        provision(storage, stolen)
    with storage.uow_factory(Scope.everything()) as uow:
        owners = {b.pool: b.company_id for b in uow.pool_bindings.list()}
    assert owners == {"acme": tenants["acme"], "globex": tenants["globex"], "gx": tenants["globex"]}


def test_audit_trail_is_isolated_and_append_only(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.everything()) as uow:
        for minutes, company, actor in [(1, acme, "alice@acme.example"), (2, globex, "carol@globex.example"),
                                        (3, None, "system"), (4, acme, "bob@acme.example")]:
            uow.audit.append(AuditEvent(at=T0 + timedelta(minutes=minutes), action="vm.start", actor=actor,
                                        company_id=company, target="web01"))
        uow.commit()
    with storage.uow_factory(Scope.of(acme)) as uow:
        mine = uow.audit.query()
        assert [e.actor for e in mine] == ["alice@acme.example", "bob@acme.example"]  # oldest first
        assert uow.audit.query(company_id=globex) == []
        assert [e.actor for e in uow.audit.query(actor="bob@acme.example")] == ["bob@acme.example"]
        assert [e.actor for e in uow.audit.query(since=T0 + timedelta(minutes=2))] == ["bob@acme.example"]
        assert [e.actor for e in uow.audit.query(limit=1)] == ["bob@acme.example"]  # the latest, not the first
        assert mine[0].at == T0 + timedelta(minutes=1)  # aware UTC, microseconds kept
        with pytest.raises(NotFound):
            uow.audit.append(AuditEvent(at=T0, action="vm.delete", actor="alice@acme.example", company_id=globex))
        assert not hasattr(uow.audit, "delete") and not hasattr(uow.audit, "update")
    with storage.uow_factory(Scope.everything()) as uow:
        assert len(uow.audit.query(since=T0)) == 4


def test_jobs_are_isolated(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.everything()) as uow:
        uow.jobs.add(_job("acmejob", acme))
        uow.jobs.add(_job("gxjob", globex, state=JobState.RUNNING))
        uow.jobs.get("gxjob").heartbeat_at = T0  # type: ignore[union-attr]
        uow.commit()
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert [j.id for j in uow.jobs.list()] == ["acmejob"]
        assert uow.jobs.get("gxjob") is None
        assert uow.jobs.by_request("req-gxjob") is None
        assert uow.jobs.stale(heartbeat_before=T0 + timedelta(hours=1)) == []
        with pytest.raises(NotFound):
            uow.jobs.add(_job("sneaky", globex))
    with storage.uow_factory(Scope.of(globex)) as uow:
        assert [j.id for j in uow.jobs.stale(heartbeat_before=T0 + timedelta(hours=1))] == ["gxjob"]
        job = uow.jobs.get("gxjob")
        assert job is not None and job.created_at == T0 and job.heartbeat_at == T0


def test_last_job_of_a_guest_is_picked_by_the_database_within_scope(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.everything()) as uow:
        uow.jobs.add(_job("old", acme))
        uow.jobs.add(_job("new", acme, at=T0 + timedelta(minutes=1)))
        uow.jobs.add(_job("gxnewest", globex, at=T0 + timedelta(minutes=2)))
        other = _job("othervm", acme, at=T0 + timedelta(minutes=3))
        other.target = {"cluster": "lab", "vmid": 102}
        uow.jobs.add(other)
        uow.commit()
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert uow.jobs.last_for(cluster="lab", vmid=101) == JobBrief("new", "new", JobState.QUEUED)
        assert uow.jobs.last_for(cluster="edge", vmid=101) is None
    with storage.uow_factory(Scope.of(globex)) as uow:
        assert uow.jobs.last_for(cluster="lab", vmid=101).id == "gxnewest"  # type: ignore[union-attr]
        assert uow.jobs.last_for(cluster="lab", vmid=102) is None  # acme's, so not there


def test_a_queued_job_is_handed_over_once_within_scope_and_never_after_it_left_the_queue(
    storage: Storage, tenants: dict[str, int]
) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.everything()) as uow:
        queued = _job("queued", acme)
        queued.conversation = {"platform": "slack", "channel": "C1"}
        uow.jobs.add(queued)
        uow.jobs.add(_job("running", acme, state=JobState.RUNNING))
        uow.jobs.add(_job("gxqueued", globex))
        uow.commit()
    route = JobRoute(conversation={"platform": "slack", "channel": "C1", "thread": "17.1"},
                     message_ref={"platform": "slack", "channel": "C1", "message_id": "17.2"})
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert uow.jobs.route_if_queued("queued") == JobRoute({"platform": "slack", "channel": "C1"}, {})
        assert uow.jobs.route_if_queued("running") is None
        assert uow.jobs.route_if_queued("gxqueued") is None  # another company's: not there
        assert uow.jobs.hand_over("queued", route=route, queue_owner="host:1")
        assert not uow.jobs.hand_over("running", route=route, queue_owner="host:1")
        assert not uow.jobs.hand_over("gxqueued", route=route, queue_owner="host:1")
        uow.commit()
    with storage.uow_factory(Scope.everything()) as uow:
        job, running, other = uow.jobs.get("queued"), uow.jobs.get("running"), uow.jobs.get("gxqueued")
    assert job is not None and running is not None and other is not None
    assert (job.conversation, job.message_ref, job.queue_owner) == (route.conversation, route.message_ref, "host:1")
    assert job.state is JobState.QUEUED and job.target == {"cluster": "lab", "vmid": 101}
    assert running.message_ref == {} and running.queue_owner is None
    assert other.message_ref == {} and other.queue_owner is None


def test_the_last_job_of_a_guest_is_an_index_lookup_and_follows_a_target_that_changes(
    storage: Storage, tenants: dict[str, int]
) -> None:
    acme = tenants["acme"]
    with storage.uow_factory(Scope.everything()) as uow:
        for i in range(50):
            job = _job(f"j{i}", acme, at=T0 + timedelta(seconds=i))
            job.target = {"cluster": "lab", "vmid": 1000 + i}
            uow.jobs.add(job)
        uow.commit()
    with storage.uow_factory(Scope.everything()) as uow:
        job = uow.jobs.get("j7")
        assert job is not None
        job.target = {**job.target, "vmid": 555}  # a target that learns its VMID later (vm create)
        uow.commit()
    seen: list[tuple[str, object]] = []
    listener = lambda _c, _cur, stmt, params, *_a: seen.append((stmt, params))  # noqa: E731
    sa.event.listen(storage.engine, "before_cursor_execute", listener)
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert uow.jobs.last_for(cluster="lab", vmid=555).id == "j7"  # type: ignore[union-attr]
        assert uow.jobs.last_for(cluster="lab", vmid=1007) is None
    sa.event.remove(storage.engine, "before_cursor_execute", listener)
    statement, params = next((s, p) for s, p in seen if "FROM jobs" in s)
    with storage.engine.connect() as connection:
        if storage.engine.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                                                               params))  # type: ignore[arg-type]
        else:
            plan = " ".join(str(row) for row in connection.exec_driver_sql("EXPLAIN " + statement,
                                                                           params))  # type: ignore[arg-type]
    assert "ix_jobs_target_guest" in plan, plan


def test_askers_of_tasks_are_found_by_upid_in_one_indexed_query_within_scope(
    storage: Storage, tenants: dict[str, int]
) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.everything()) as uow:
        by_email = {u.email: u.id or 0 for u in uow.users.list()}
        for i in range(50):
            job = _job(f"j{i}", acme, at=T0 + timedelta(seconds=i))
            job.actor_user_id = by_email["bob@acme.example"]
            uow.jobs.add(job)
            uow.jobs.add_task(job, f"UPID:pve1:{i:08X}:vzdump:101:pvebot@pve!bot:")
        # a schedule run: one job, one vzdump task per node; the job follows the last one now
        run = _job("run", acme)
        run.actor_user_id, run.upid = by_email["bob@acme.example"], "UPID:pve2:RUN2:vzdump::pvebot@pve!bot:"
        uow.jobs.add(run)
        for upid in ("UPID:pve1:RUN1:vzdump::pvebot@pve!bot:", run.upid, run.upid):  # the same task twice: once
            uow.jobs.add_task(run, upid)
        gx = _job("gx", globex)
        gx.actor_user_id = by_email["carol@globex.example"]
        uow.jobs.add(gx)
        uow.jobs.add_task(gx, "UPID:pve1:GX:vzdump:102:pvebot@pve!bot:")
        uow.jobs.add(_job("notask", acme))  # no task yet: no UPID
        uow.commit()
    wanted = ["UPID:pve1:00000007:vzdump:101:pvebot@pve!bot:", "UPID:pve1:GX:vzdump:102:pvebot@pve!bot:",
              "UPID:pve1:NOTOURS:vzdump::root@pam:", "UPID:pve1:RUN1:vzdump::pvebot@pve!bot:",
              "UPID:pve2:RUN2:vzdump::pvebot@pve!bot:"]
    seen: list[tuple[str, object]] = []
    listener = lambda _c, _cur, stmt, params, *_a: seen.append((stmt, params))  # noqa: E731
    sa.event.listen(storage.engine, "before_cursor_execute", listener)
    with storage.uow_factory(Scope.of(acme)) as uow:
        found = uow.jobs.askers(wanted * 2)
    sa.event.remove(storage.engine, "before_cursor_execute", listener)
    # acme's runs name bob, each node's task of the schedule run too; globex's job is not there for
    # acme, like a task pvebot never started
    assert {upid: u.email for upid, u in found.items()} == {
        wanted[0]: "bob@acme.example", wanted[3]: "bob@acme.example", wanted[4]: "bob@acme.example"}
    assert len([s for s, _ in seen if "FROM job_tasks" in s]) == 1, seen
    with storage.uow_factory(Scope.of(globex)) as uow:
        assert {upid: u.email for upid, u in uow.jobs.askers(wanted).items()} == {wanted[1]: "carol@globex.example"}
        assert uow.jobs.askers([]) == {}
    with storage.uow_factory(Scope.everything()) as uow:
        assert len(uow.jobs.askers(wanted)) == 4
    statement, params = next((s, p) for s, p in seen if "FROM job_tasks" in s)
    with storage.engine.connect() as connection:
        explain = "EXPLAIN QUERY PLAN " if storage.engine.dialect.name == "sqlite" else "EXPLAIN "
        plan = " ".join(str(row) for row in connection.exec_driver_sql(explain + statement,
                                                                       params))  # type: ignore[arg-type]
    assert "ix_job_tasks_upid" in plan, plan


def test_claim_is_conditional_and_scoped(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.everything()) as uow:
        uow.jobs.add(_job("acmejob", acme))
        uow.jobs.add(_job("gxjob", globex))
        uow.commit()
    later = T0 + timedelta(seconds=5)
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert uow.jobs.claim("gxjob", now=later) is False  # another company's: as if it did not exist
        assert uow.jobs.claim("nosuchjob", now=later) is False
        uow.commit()
    with storage.uow_factory(Scope.of(acme)) as first, storage.uow_factory(Scope.everything()) as second:
        assert first.jobs.get("acmejob").state is JobState.QUEUED  # type: ignore[union-attr]
        assert second.jobs.get("acmejob").state is JobState.QUEUED  # type: ignore[union-attr]
        assert first.jobs.claim("acmejob", now=later) is True
        first.commit()
        # the second delivery read "queued" too, but its conditional UPDATE finds nothing to claim
        assert second.jobs.claim("acmejob", now=later) is False
    with storage.uow_factory(Scope.everything()) as uow:
        states = {j.id: (j.state, j.started_at) for j in uow.jobs.list()}
    assert states == {"acmejob": (JobState.RUNNING, later), "gxjob": (JobState.QUEUED, None)}


def test_approvals_are_isolated(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.everything()) as uow:
        uow.approvals.add(_approval("acmeapr", acme))
        uow.approvals.add(_approval("gxapr", globex))
        uow.approvals.add(_approval("oldapr", acme, state=ApprovalState.DENIED))
        uow.commit()
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert sorted(a.id for a in uow.approvals.list()) == ["acmeapr", "oldapr"]
        assert [a.id for a in uow.approvals.list(states=[ApprovalState.PENDING])] == ["acmeapr"]
        assert uow.approvals.get("gxapr") is None
        assert uow.approvals.by_request("req-gxapr") is None
        with pytest.raises(NotFound):
            uow.approvals.add(_approval("sneaky", globex))
        request = uow.approvals.get("acmeapr")
        assert request is not None and request.expires_at == T0 + timedelta(minutes=30)
        assert request.preview == {"disks": []}


def test_decide_is_exactly_once_and_scoped(storage: Storage, tenants: dict[str, int]) -> None:
    acme, globex = tenants["acme"], tenants["globex"]
    with storage.uow_factory(Scope.everything()) as uow:
        uow.approvals.add(_approval("acmeapr", acme))
        uow.approvals.add(_approval("gxapr", globex))
        uow.commit()
    at = T0 + timedelta(minutes=1)
    with storage.uow_factory(Scope.of(acme)) as uow:
        assert uow.approvals.decide("gxapr", to=ApprovalState.APPROVED, by_user_id=7, at=at) is False
        uow.commit()
    with storage.uow_factory(Scope.of(acme)) as first, storage.uow_factory(Scope.everything()) as second:
        assert first.approvals.get("acmeapr").state is ApprovalState.PENDING  # type: ignore[union-attr]
        assert second.approvals.get("acmeapr").state is ApprovalState.PENDING  # type: ignore[union-attr]
        assert first.approvals.decide("acmeapr", to=ApprovalState.APPROVED, by_user_id=7, at=at, note="ok")
        first.commit()
        assert not second.approvals.decide("acmeapr", to=ApprovalState.DENIED, by_user_id=8, at=at)
        second.commit()
    with storage.uow_factory(Scope.everything()) as uow:
        won = uow.approvals.get("acmeapr")
        untouched = uow.approvals.get("gxapr")
    assert won is not None and (won.state, won.decided_by_user_id, won.decided_at, won.decision_note) == (
        ApprovalState.APPROVED, 7, at, "ok")
    assert untouched is not None and untouched.state is ApprovalState.PENDING and untouched.decided_by_user_id is None


def test_naive_datetimes_are_refused(storage: Storage, tenants: dict[str, int]) -> None:
    with storage.uow_factory(Scope.everything()) as uow, pytest.raises(sa.exc.StatementError):
        uow.jobs.add(_job("naive", tenants["acme"], at=datetime(2026, 1, 1)))


# ---- services over the same databases ------------------------------------------------------


def _deps(storage: Storage, clock: FakeClock) -> Deps:
    return Deps(uow_factory=storage.uow_factory, hypervisors=FakeHypervisors(), queue=FakeQueue(),
                notifier=FakeNotifier(), clock=clock)


def test_services_answer_out_of_scope_like_missing(storage: Storage, tenants: dict[str, int], clock: FakeClock) -> None:
    deps = _deps(storage, clock)
    with storage.uow_factory(Scope.everything()) as uow:
        uow.jobs.add(_job("gxjob", tenants["globex"]))
        audit.record(uow, clock=clock, actor="carol@globex.example", action="vm.start", company_id=tenants["globex"])
        uow.commit()
    alice, carol = principal(storage, "alice@acme.example"), principal(storage, "carol@globex.example")
    with pytest.raises(NotFound) as missing:
        jobs.get(deps, alice, "nosuchjob")
    with pytest.raises(NotFound) as foreign:
        jobs.get(deps, alice, "gxjob")
    assert str(foreign.value).replace("gxjob", "x") == str(missing.value).replace("nosuchjob", "x")
    with pytest.raises(NotFound):
        jobs.cancel(deps, alice, "gxjob")
    assert jobs.get(deps, carol, "gxjob").state is JobState.QUEUED
    with storage.uow_factory(alice.scope) as uow:
        assert audit.query(uow, alice) == []
        with pytest.raises(NotFound):
            audit.query(uow, alice, company_id=tenants["globex"])
    with storage.uow_factory(carol.scope) as uow:
        assert [e.actor for e in audit.query(uow, carol)] == ["carol@globex.example"]
    assert jobs.cancel(deps, carol, "gxjob").state is JobState.CANCELLED


def test_reprovisioning_is_a_no_op_on_both_backends(storage: Storage) -> None:
    assert provision(storage, THREE_CLUSTERS)
    assert provision(storage, THREE_CLUSTERS, env=TOKEN_ENV) == []


def test_a_scoped_user_listing_hides_assignments_to_other_companies(storage: Storage) -> None:
    doc = STANDARD_DOC + (
        "  - {email: sue@acme.example, name: Sue Sales, role: salesperson, company: acme, companies: [acme, globex]}\n"
    )
    provision(storage, doc)
    acme = principal(storage, "alice@acme.example")
    with storage.uow_factory(acme.scope) as uow:
        sue = uow.users.by_email("sue@acme.example")
        assert sue is not None
        assert [c.slug for c in sue.assigned_companies] == ["acme"]
    with storage.uow_factory(Scope.everything()) as uow:
        sue = uow.users.by_email("sue@acme.example")
        assert sue is not None
        assert [c.slug for c in sue.assigned_companies] == ["acme", "globex"]
