"""Backup tenancy as a property: nobody lists, restores, deletes or schedules another company's backups.

Hypothesis builds companies with one pool each on one cluster, guests in them with backups, and
then a history: backups taken, companies listing their backups (which records ownership), VMs
deleted and their VMIDs reused by a new guest of another company. The ground truth is who owned a
VM when each backup was made. Then, for every principal and every VMID and backup:

* ``backup list`` shows only backups whose true owner is in the principal's scope, and the
  current owner sees every backup its VM made;
* restoring, deleting or protecting another company's backup answers like a backup that does
  not exist (``NotFound``), never ``PermissionDenied``;
* schedules: a company lists only its own jobs (never an operator's), and another's by name is
  not found; a schedule of a company's VMs, run after their VMIDs went to another company, backs up
  none of that company's guests;
* after one maintenance pass (``schedule_reconcile``), every job's stored selection, the one Proxmox's
  scheduler runs, names only its company's guests and keeps all of them; a job left with none is
  disabled and selects only the company's pool; what the company is told names no one else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import StaticPool

from adapters.sql.tables import metadata
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from core.chat import ConversationRef
from core.errors import Conflict, NotFound, PermissionDenied
from core.model import Cluster, Company, GuestRef, PoolBinding, Role, TaskInfo, User
from core.principal import Principal, Scope
from core.rbac import MATRIX, Perm
from core.services import backup_requests, backup_schedules, backups, requests, schedule_reconcile
from core.services.backup_targets import BACKUP
from core.services.deps import Deps
from tests.fakes import FakeClock, FakeHypervisor, FakeHypervisors, FakeNotifier, FakeQueue

CONVERSATION = ConversationRef(platform="shell", channel="c")

# (kind, vmid index, company index): take a backup | a company lists all it has | reuse the VMID for a company
Event = tuple[str, int, int]


@st.composite
def histories(draw: st.DrawFn) -> tuple[int, tuple[int, ...], tuple[Event, ...]]:
    n = draw(st.integers(2, 3), label="companies")
    guests = tuple(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=4), label="guest owners"))
    event = st.tuples(st.sampled_from(["backup", "list", "reuse"]), st.integers(0, len(guests) - 1),
                      st.integers(0, n - 1))
    return n, guests, tuple(draw(st.lists(event, max_size=10), label="history"))


@dataclass
class World:
    deps: Deps
    hv: FakeHypervisor
    company_ids: list[int]
    admins: list[Principal]
    principals: list[Principal]
    # volid -> the company that owned its VM when it was made
    truth: dict[str, int] = field(default_factory=dict)
    # vmid -> its company now
    owner: dict[int, int] = field(default_factory=dict)


@contextmanager
def built(n: int, guests: tuple[int, ...]) -> Iterator[World]:
    engine = make_engine("sqlite://", poolclass=StaticPool)
    metadata.create_all(engine)
    factory = SqlUnitOfWorkFactory(engine)
    hypervisors = FakeHypervisors()
    deps = Deps(uow_factory=factory, hypervisors=hypervisors, queue=FakeQueue(), notifier=FakeNotifier(),
                clock=FakeClock())
    try:
        with factory(Scope.everything()) as uow:
            companies = [Company(slug=f"co{i}", name=f"Company {i}") for i in range(n)]
            for c in companies:
                uow.companies.add(c)
            cluster = Cluster(name="lab", api_urls=["https://10.0.0.1:8006"], token_id="pvebot@pve!bot",
                              token_secret_encrypted="x")
            uow.clusters.add(cluster)
            ids = [c.id or 0 for c in companies]
            for i, cid in enumerate(ids):
                uow.pool_bindings.add(PoolBinding(company_id=cid, cluster_id=cluster.id or 0, pool=f"pool{i}"))
            users = [User(email=f"admin{i}@example.com", name=f"Admin {i}", role=Role.COMPANY_ADMIN,
                          company_id=cid) for i, cid in enumerate(ids)]
            users.append(User(email="sales@example.com", name="Sales", role=Role.SALESPERSON, company_id=ids[0],
                              assigned_companies=[companies[-1]]))
            users.append(User(email="root@example.com", name="Root", role=Role.SUPER_ADMIN))
            for u in users:
                uow.users.add(u)
            uow.commit()
        hv = hypervisors.cluster("lab")
        world = World(deps, hv, ids, [Principal.of(u) for u in users[:n]], [Principal.of(u) for u in users])
        for index, company in enumerate(guests):
            hv.add(100 + index, f"vm{index}", pool=f"pool{company}", status="stopped")
            world.owner[100 + index] = ids[company]
        yield world
    finally:
        engine.dispose()


def _take_backup(world: World, vmid: int) -> None:
    world.hv.backup(GuestRef("lab", "pve1", "qemu", vmid), storage="local")
    world.truth[world.hv.backup_files[vmid][-1].volid] = world.owner[vmid]


def _reuse(world: World, vmid: int, company_index: int) -> None:
    """The VM is deleted; the next guest created takes its VMID, in another company's pool."""
    del world.hv.guests[vmid]
    world.hv.add(vmid, f"new{vmid}", pool=f"pool{company_index}", status="stopped")
    world.owner[vmid] = world.company_ids[company_index]


def _run(world: World, history: tuple[Event, ...]) -> None:
    for kind, index, company in history:
        vmid = 100 + index
        if kind == "backup":
            _take_backup(world, vmid)
        elif kind == "list":
            admin = world.admins[company]
            for guest_vmid, owner in world.owner.items():
                if owner == admin.company_id:
                    backups.for_vm(world.deps, admin, str(guest_vmid))
        else:
            _reuse(world, vmid, company)


def check(world: World) -> None:
    for p in world.principals:
        for vmid, owner in world.owner.items():
            try:
                listing = backups.for_vm(world.deps, p, str(vmid))
                shown = {b.backup.volid for b in listing.backups}
            except NotFound:
                shown = set()
            # nothing shown is another company's
            assert all(p.scope.contains(world.truth[v]) for v in shown), (p.email, vmid)
            if p.scope.contains(owner) and not p.scope.unrestricted:
                born = world.hv.born_at[vmid]
                made_by_this_vm = {b.volid for b in world.hv.backup_files.get(vmid, []) if b.ctime >= born}
                assert made_by_this_vm <= shown, (p.email, vmid)
            for b in world.hv.backup_files.get(vmid, []):
                true_owner = world.truth[b.volid]
                if p.scope.contains(true_owner):
                    continue
                _refused(world, p, vmid, b.volid)


def _refused(world: World, p: Principal, vmid: int, volid: str) -> None:
    """Another company's backup: not found to look up, restore or delete (a role without the right is refused
    alike for every backup, which tells nothing)."""
    calls = (
        (None, lambda: BACKUP.resolve(world.deps, p, f"{vmid} {volid}")),
        (Perm.BACKUP_RESTORE, lambda: backup_requests.restore(
            world.deps, p, vm=str(vmid), backup=volid, as_new=None, reason="", conversation=CONVERSATION,
            request_id=f"r{vmid}")),
        (Perm.BACKUP_DELETE, lambda: backup_requests.on_backup(
            world.deps, p, action="backup.delete", vm=str(vmid), backup=volid, reason="", conversation=CONVERSATION,
            request_id=f"d{vmid}")),
    )
    for perm, call in calls:
        refused = PermissionDenied if perm is not None and perm not in MATRIX[p.role] else NotFound
        with pytest.raises(refused):
            call()


def check_schedules(world: World) -> None:
    world.hv.jobs["backup-operator"] = ("sat 04:00", {"all": "1", "storage": "local"})
    for i, admin in enumerate(world.admins):
        mine = [vmid for vmid, owner in world.owner.items() if owner == admin.company_id]
        req = backup_schedules.ScheduleRequest(when="daily 02:00", vms=tuple(map(str, mine)) if mine else None,
                                               all=not mine, storage="local")
        backup_schedules.create(world.deps, admin, name="nightly", req=req)
        # another company's VM in a selection is not found, like any VM that does not exist
        others = [vmid for vmid, owner in world.owner.items() if owner != admin.company_id]
        if others:
            with pytest.raises(NotFound):
                backup_schedules.create(world.deps, admin, name=f"x{i}", req=backup_schedules.ScheduleRequest(
                    when="02:00", vms=(str(others[0]),), storage="local"))
    for p in world.principals:
        listed = backup_schedules.list_schedules(world.deps, p)
        if p.scope.unrestricted:
            assert len(listed) == len(world.hv.jobs)
            continue
        assert {s.job.id for s in listed} == {f"pvebot-co{world.company_ids.index(c)}-nightly"
                                              for c in world.company_ids if p.scope.contains(c)}
    for admin in world.admins:
        for other in world.admins:
            if other is admin:
                continue
            # the name is the same, but resolving it in one's own company never reaches the other's job
            target = backup_schedules.SCHEDULE.resolve(world.deps, admin, "nightly")
            assert target.record["job_id"] == f"pvebot-co{world.company_ids.index(admin.company_id or 0)}-nightly"
        with pytest.raises(NotFound):
            backup_schedules.SCHEDULE.resolve(world.deps, admin, "operator")


def check_schedule_runs(world: World) -> None:
    """Each company's schedule of the VMs it had, run after VMIDs changed hands: only its own are backed up."""
    for admin in world.admins:
        try:
            target = backup_schedules.SCHEDULE.resolve(world.deps, admin, "mine")
        except NotFound:
            continue  # it had no VMs when the schedules were made
        target = backup_schedules.SCHEDULE.recheck(world.deps, admin, target.record,
                                                   company_id=admin.company_id or 0, fresh=True)
        world.hv.calls.clear()
        named = {int(v) for v in world.hv.jobs[target.record["job_id"]][1]["vmid"].split(",")}
        try:
            steps = list(backup_schedules.OPERATIONS[1].steps(world.hv, target, {}))
        except Conflict:
            # refused only when none of the VMIDs it names is the company's any more
            assert all(world.owner[v] != admin.company_id for v in named), (admin.email, named, world.owner)
            continue
        for step in steps:
            assert step.call is not None
            step.call()
        for _, (_node, options) in (c for c in world.hv.calls if c[0] == "run_backup"):
            picked = {int(v) for v in options.get("vmid", "").split(",") if v}
            assert all(world.owner[v] == admin.company_id for v in picked), (admin.email, picked, world.owner)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_no_principal_reaches_another_companys_backups(plan: tuple[int, tuple[int, ...], tuple[Event, ...]]) -> None:
    n, guests, history = plan
    with built(n, guests) as world:
        for vmid in world.owner:
            _take_backup(world, vmid)
        _run(world, history)
        check(world)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_no_company_sees_or_reaches_another_companys_schedules(
        plan: tuple[int, tuple[int, ...], tuple[Event, ...]]) -> None:
    n, guests, history = plan
    with built(n, guests) as world:
        # schedules of the VMs each company has now, then VMIDs deleted and reused by others
        for admin in world.admins:
            mine = [vmid for vmid, owner in world.owner.items() if owner == admin.company_id]
            if mine:
                backup_schedules.create(world.deps, admin, name="mine", req=backup_schedules.ScheduleRequest(
                    when="daily 01:00", vms=tuple(map(str, mine)), storage="local"))
        _run(world, tuple(e for e in history if e[0] == "reuse"))
        check_schedule_runs(world)
        for jid in [j for j in world.hv.jobs if j.endswith("-mine")]:
            del world.hv.jobs[jid]
        check_schedules(world)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_a_maintenance_pass_leaves_every_schedule_naming_only_its_companys_guests(
        plan: tuple[int, tuple[int, ...], tuple[Event, ...]]) -> None:
    n, guests, history = plan
    with built(n, guests) as world:
        made: dict[str, tuple[int, set[int]]] = {}
        for i, admin in enumerate(world.admins):
            mine = [vmid for vmid, owner in world.owner.items() if owner == admin.company_id]
            if mine:
                backup_schedules.create(world.deps, admin, name="mine", req=backup_schedules.ScheduleRequest(
                    when="daily 01:00", vms=tuple(map(str, mine)), storage="local"))
                made[f"pvebot-co{i}-mine"] = (i, set(mine))
        _run(world, tuple(e for e in history if e[0] == "reuse"))
        changed = schedule_reconcile.reconcile_all(world.deps)
        for jid, (i, named_before) in made.items():
            cid = world.company_ids[i]
            options = world.hv.jobs[jid][1]
            still_mine = {v for v in named_before if world.owner[v] == cid}
            if options.get("enabled") == "0":
                # none left: disabled, and its selection can reach this company's guests only
                assert not still_mine and "vmid" not in options and options["pool"] == f"pool{i}", (jid, options)
            else:
                named = {int(v) for v in options["vmid"].split(",")}
                assert named == still_mine, (jid, named, world.owner)  # nobody else's, and none of its own lost
        assert {c.job_id for c in changed} == {jid for jid, (i, before) in made.items()
                                               if any(world.owner[v] != world.company_ids[i] for v in before)}
        for c in changed:
            title, text = schedule_reconcile.message(c)
            others = [j for j, cid in enumerate(world.company_ids) if cid != c.company_id]
            for j in others:
                for word in (f"co{j}", f"Company {j}", f"pool{j}"):
                    assert word not in title + text, (word, title, text)
            assert not any(g.name in title + text for g in world.hv.guests.values()), (title, text)
        assert schedule_reconcile.reconcile_all(world.deps) == []  # a second pass finds nothing to do


def test_an_old_owner_keeps_its_backups_after_the_vmid_is_reused() -> None:
    with built(2, (0,)) as world:
        _take_backup(world, 100)
        old = world.hv.backup_files[100][0].volid
        backups.for_vm(world.deps, world.admins[0], "100")  # seen while the VM was co0's: recorded as co0's
        _reuse(world, 100, 1)
        _take_backup(world, 100)
        new = world.hv.backup_files[100][1].volid
        newcomer = {b.backup.volid for b in backups.for_vm(world.deps, world.admins[1], "100").backups}
        assert newcomer == {new}
        # the old owner finds the VM gone, its backup still there, and can restore it as a new VM
        kept = backups.for_vm(world.deps, world.admins[0], "lab/100")
        assert [b.backup.volid for b in kept.backups] == [old] and "deleted" in kept.label
        outcome = backup_requests.restore(world.deps, world.admins[0], vm="100", backup="latest", as_new="back",
                                          reason="", conversation=CONVERSATION, request_id="r-old")
        assert outcome.approval is not None and outcome.approval.target["volid"] == old


def test_a_delete_request_records_the_owner_of_the_vms_backups() -> None:
    """Nobody listed them, but the delete card promised "backups kept": the old owner still has them."""
    with built(2, (0,)) as world:
        _take_backup(world, 100)
        old = world.hv.backup_files[100][0].volid
        outcome = requests.operate(world.deps, world.admins[0], action="vm.delete", ref="100", reason="",
                                   conversation=CONVERSATION, request_id="del-100")
        assert outcome.approval is not None
        assert dict(outcome.approval.preview["facts"])["Backups kept"] == old
        _reuse(world, 100, 1)
        assert [b.backup.volid for b in backups.for_vm(world.deps, world.admins[0], "lab/100").backups] == [old]
        assert backups.for_vm(world.deps, world.admins[1], "100").backups == []


def test_history_of_a_reused_vmid_starts_with_its_new_guest() -> None:
    with built(2, (0,)) as world:
        _take_backup(world, 100)
        backups.for_vm(world.deps, world.admins[0], "100")
        world.hv.history.append(TaskInfo(upid="UPID:old", node="pve1", type="vzdump", id="100", user="root@pam",
                                         starttime=world.hv.tick(), endtime=None, status="job errors"))
        _reuse(world, 100, 1)
        world.hv.history.append(TaskInfo(upid="UPID:new", node="pve1", type="vzdump", id="100", user="root@pam",
                                         starttime=world.hv.tick(), endtime=None, status="OK"))
        world.deps.clock.current = datetime.fromtimestamp(world.hv.now_ts, UTC)  # type: ignore[attr-defined]
        newcomer = backups.history(world.deps, world.admins[1])
        assert [(r.upid, r.outcome) for r in newcomer] == [("UPID:new", "ok")]
