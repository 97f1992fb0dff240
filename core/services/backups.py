"""Whose backups are whose, and reading them: list, status and history, in the caller's scope only.

A backup names its guest only by VMID, and Proxmox gives a freed VMID to the next guest created, so
a VMID says nothing about whose a backup is once its VM is gone. pvebot therefore records the owner
of every backup the first time it sees it while the VM is in a company's pool (listing, status,
history, the delete card), and from then on that record decides: the company that owned the VM when
the backup was made keeps it after the VM is deleted, and a newcomer on the same VMID never sees it.
A backup first seen only after its VMID went to another company is claimed only when it is newer
than the guest now on that VMID (qemu's creation time); older ones stay nobody's.

Reads cost one content call per backup storage and node: a shared storage is read once, a local one
on each node, never once per VM.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from core import rbac
from core.errors import DuplicateRequest, InvalidArguments, NotFound
from core.model import Backup, BackupOwner, Cluster, Company, TaskInfo
from core.ports import Hypervisor
from core.principal import Principal
from core.services import inventory
from core.services.deps import Deps
from core.services.operations import Target

DEFAULT_MAX_AGE_HOURS = 26


@dataclass(frozen=True)
class OwnedBackup:
    backup: Backup
    cluster: Cluster
    company: Company | None
    label: str

    @property
    def company_id(self) -> int | None:
        return None if self.company is None else self.company.id


def label_of(backup: Backup) -> str:
    """The short name ``backup list`` shows: its time (UTC), enough to tell one VM's backups apart."""
    return datetime.fromtimestamp(backup.ctime, UTC).strftime("%Y%m%d-%H%M%S")


def allowed_storages(company: Company | None) -> list[str] | None:
    """The storages the company may back up to, or None when its policy does not limit them."""
    if company is None or not company.backup_policy.get("storages"):
        return None
    return [str(s) for s in company.backup_policy["storages"]]


def check_storage(company: Company | None, storage: str) -> None:
    allowed = allowed_storages(company)
    if allowed is not None and storage not in allowed:
        raise InvalidArguments(f"storage '{storage[:40]}' is not one your company may use for backups "
                               f"(allowed: {', '.join(allowed)})")


def read_backups(hv: Hypervisor, *, vmid: int | None = None, storage: str | None = None) -> list[Backup]:
    """Every backup on the cluster (or of ``vmid``): shared storages read once, local ones on each node."""
    found: dict[str, Backup] = {}
    read_shared: set[str] = set()
    stores = hv.backup_stores()
    if storage is not None and not any(s.storage == storage for s in stores):
        # a typo is not "no backups": say that there is no such storage
        raise NotFound(f"storage '{storage[:40]}' holds no backups on cluster {hv.cluster_name}")
    for store in stores:
        if storage is not None and store.storage != storage:
            continue
        if store.shared:
            if store.storage in read_shared:
                continue
            read_shared.add(store.storage)
        for b in hv.backups(node=store.node, storage=store.storage, vmid=vmid):
            found.setdefault(b.volid, b)
    return sorted(found.values(), key=lambda b: (b.ctime, b.volid), reverse=True)


def visible(
    deps: Deps,
    principal: Principal,
    *,
    cluster: Cluster,
    backups: Iterable[Backup],
    guests: list[inventory.OwnedGuest],
    companies: dict[int, Company],
) -> list[OwnedBackup]:
    """The backups ``principal`` may see, recording the owner of those seen for the first time.

    Args:
        deps: ports.
        principal: who asks.
        cluster: where the backups are.
        backups: as read from Proxmox.
        guests: the guests of ``cluster`` in the principal's scope, with their companies, right now.
        companies: the companies in scope, by id.

    Returns:
        The principal's backups, in the order given.
    """
    backups = list(backups)
    assert cluster.id is not None
    vmids = {b.vmid for b in backups}
    one = next(iter(vmids)) if len(vmids) == 1 else None  # one VM's backups: read only its records
    with deps.uow_factory(principal.scope) as uow:
        mine = uow.backup_owners.mine(cluster.id, vmid=one)
        known = uow.backup_owners.known(cluster.id, vmid=one)
    by_vmid = {o.guest.vmid: o for o in guests if o.cluster.id == cluster.id and o.company_id is not None}
    hv = deps.hypervisors.for_cluster(cluster)
    created: dict[int, int | None] = {}
    claims: list[BackupOwner] = []
    out: list[OwnedBackup] = []
    for b in backups:
        owner_id = mine.get(b.volid)
        if owner_id is None and b.volid not in known:
            guest = by_vmid.get(b.vmid)
            if guest is not None and guest.company_id is not None and _newer_than_guest(hv, guest, b, created):
                owner_id = guest.company_id
                claims.append(BackupOwner(cluster_id=cluster.id, volid=b.volid, vmid=b.vmid, company_id=owner_id,
                                          seen_at=deps.clock.now()))
        if owner_id is not None:
            out.append(OwnedBackup(b, cluster, companies.get(owner_id), label_of(b)))
        elif principal.scope.unrestricted:
            out.append(OwnedBackup(b, cluster, None, label_of(b)))
    if claims:
        _record(deps, principal, claims)
    return out


def _newer_than_guest(hv: Hypervisor, guest: inventory.OwnedGuest, backup: Backup,
                      created: dict[int, int | None]) -> bool:
    # asked once per VM and only for backups nobody has claimed yet: in steady state, never
    if guest.guest.vmid not in created:
        created[guest.guest.vmid] = hv.identity(guest.guest.ref).created
    born = created[guest.guest.vmid]
    return born is None or backup.ctime >= born


def _record(deps: Deps, principal: Principal, claims: list[BackupOwner]) -> None:
    with deps.uow_factory(principal.scope) as uow:
        try:
            uow.backup_owners.add(claims)
            uow.commit()
            return
        except DuplicateRequest:
            uow.rollback()
    # another request recorded some of them a moment ago: theirs stand, record the rest one by one
    with deps.uow_factory(principal.scope) as uow:
        for claim in claims:
            try:
                uow.backup_owners.add([replace(claim)])
                uow.commit()
            except DuplicateRequest:
                uow.rollback()


def keep_owners(deps: Deps, principal: Principal, target: Target, params: dict[str, Any]) -> None:
    """Record whose a guest's backups are before it is deleted: afterwards its VMID says nothing.

    An operation's ``prepare`` (``vm.delete``): the delete card tells the company its backups are kept.
    """
    if target.guest is None or target.cluster is None:
        return
    seen = inventory.view(deps, principal, cluster=target.cluster.name)
    hv = deps.hypervisors.for_cluster(target.cluster)
    visible(deps, principal, cluster=target.cluster, backups=read_backups(hv, vmid=target.guest.vmid),
            guests=seen.guests, companies=seen.companies)


@dataclass(frozen=True)
class Listing:
    """One VM's backups (newest first), or every visible backup when no VM was named."""

    label: str
    backups: list[OwnedBackup]
    company: Company | None


def _scope_view(deps: Deps, principal: Principal) -> inventory.View:
    rbac.require(principal, rbac.Perm.BACKUP_READ)
    return inventory.view(deps, principal)


def for_vm(deps: Deps, principal: Principal, ref: str, *, storage: str | None = None) -> Listing:
    """The backups of the VM ``ref`` names, including those of a deleted VM the caller's company owned.

    Raises:
        NotFound: no such VM in scope, and no backup of that VMID the caller's company owns; or no storage
            named ``storage`` holds backups.
    """
    seen = _scope_view(deps, principal)
    try:
        owned = inventory.resolve(seen.guests, ref)
    except NotFound:
        return _deleted_vm(deps, principal, seen, ref, storage=storage)
    hv = deps.hypervisors.for_cluster(owned.cluster)
    found = visible(deps, principal, cluster=owned.cluster, backups=read_backups(hv, vmid=owned.guest.vmid,
                                                                                 storage=storage),
                    guests=seen.guests, companies=seen.companies)
    # a backup of a former guest on this VMID stays with its owner, even one in the caller's scope
    found = [b for b in found if b.company_id == owned.company_id or b.company_id is None]
    return Listing(owned.label, found, owned.company)


def _deleted_vm(deps: Deps, principal: Principal, seen: inventory.View, ref: str, *,
                storage: str | None) -> Listing:
    cluster_name, _, vmid_text = ref.rpartition("/")
    if not inventory.VMID.match(vmid_text):
        raise NotFound(f"VM '{ref[:40]}' not found")
    vmid = int(vmid_text)
    clusters = [c for c in seen.clusters if not cluster_name or c.name == cluster_name]
    for cluster in clusters:
        assert cluster.id is not None
        with deps.uow_factory(principal.scope) as uow:
            volids = uow.backup_owners.mine(cluster.id, vmid=vmid)
        if not volids:
            continue
        hv = deps.hypervisors.for_cluster(cluster)
        backups = [OwnedBackup(b, cluster, seen.companies.get(volids[b.volid]), label_of(b))
                   for b in read_backups(hv, vmid=vmid, storage=storage) if b.volid in volids]
        company = seen.companies.get(next(iter(volids.values())))
        return Listing(f"VMID {vmid} (deleted; {cluster.name})", backups, company)
    raise NotFound(f"VM '{ref[:40]}' not found")


def pick(listing: Listing, ref: str) -> OwnedBackup:
    """The backup ``ref`` names among ``listing``'s: its volume id, ``latest`` or its label.

    Raises:
        NotFound: none matches (another company's answers alike).
        InvalidArguments: a label that matches several (on different storages).
    """
    if not listing.backups:
        raise NotFound(f"{listing.label} has no backups")
    if ref == "latest":
        return listing.backups[0]
    found = [b for b in listing.backups if b.backup.volid == ref or b.label == ref
             or f"{b.label}@{b.backup.storage}" == ref]
    if not found:
        raise NotFound(f"backup '{ref[:80]}' of {listing.label} not found")
    if len(found) > 1:
        raise InvalidArguments(f"'{ref[:40]}' names several backups: "
                               + ", ".join(f"{b.label}@{b.backup.storage}" for b in found) + ". Add @storage.")
    return found[0]


@dataclass(frozen=True)
class VmBackupState:
    guest: inventory.OwnedGuest
    last: OwnedBackup | None
    age_hours: float | None
    stale: bool


def status(deps: Deps, principal: Principal, *, vm: str | None = None) -> tuple[list[VmBackupState], int]:
    """Each VM's last backup, its age, and whether it is missing or older than its company's limit.

    Returns:
        The VMs (those never backed up or stale first), and the max age in hours of the caller's company.
    """
    seen = _scope_view(deps, principal)
    guests = seen.guests if vm is None else [inventory.resolve(seen.guests, vm)]
    now = deps.clock.now().timestamp()
    newest: dict[tuple[int | None, int], OwnedBackup] = {}
    for cluster in seen.clusters:
        if not any(o.cluster.id == cluster.id for o in guests):
            continue
        hv = deps.hypervisors.for_cluster(cluster)
        vmid = guests[0].guest.vmid if vm is not None else None
        for b in visible(deps, principal, cluster=cluster, backups=read_backups(hv, vmid=vmid), guests=seen.guests,
                         companies=seen.companies):
            newest.setdefault((cluster.id, b.backup.vmid), b)
    states = []
    for o in guests:
        last = newest.get((o.cluster.id, o.guest.vmid))
        if last is not None and last.company_id != o.company_id:
            last = None  # a former guest's backup on this VMID is not this VM's
        limit = _max_age(o.company)
        age = None if last is None else (now - last.backup.ctime) / 3600
        states.append(VmBackupState(o, last, age, stale=age is None or age > limit))
    states.sort(key=lambda s: (not s.stale, s.guest.guest.name.lower()))
    company = seen.companies.get(principal.company_id) if principal.company_id is not None else None
    return states, _max_age(company)


def _max_age(company: Company | None) -> int:
    if company is None:
        return DEFAULT_MAX_AGE_HOURS
    return int(company.backup_policy.get("max_age_hours", DEFAULT_MAX_AGE_HOURS))


@dataclass(frozen=True)
class RunOutcome:
    """What one backup run did to one VM."""

    guest: inventory.OwnedGuest
    started: int
    # ok | warnings | failed
    outcome: str
    reason: str
    # who Proxmox says started the task: pvebot's token for a run asked for in chat
    user: str
    upid: str
    # the chat user who asked pvebot for it (name, else email); None for a run pvebot did not start
    asked_by: str | None = None


def history(deps: Deps, principal: Principal, *, vm: str | None = None, since_seconds: int = 7 * 86400
            ) -> list[RunOutcome]:
    """Backup runs touching the caller's VMs, newest first, from each node's task history.

    Scheduled and operator runs count too. A run of several guests has no VMID in its task id, so
    its log is read to tell which guests it backed up and how each fared. Proxmox knows only pvebot's
    token as the user of a run asked for in chat; the job that started it (by UPID, in the caller's
    scope) says who asked.
    """
    seen = _scope_view(deps, principal)
    guests = seen.guests if vm is None else [inventory.resolve(seen.guests, vm)]
    since = int(deps.clock.now().timestamp()) - since_seconds
    out: list[RunOutcome] = []
    for cluster in seen.clusters:
        mine = {o.guest.vmid: o for o in guests if o.cluster.id == cluster.id}
        if not mine:
            continue
        hv = deps.hypervisors.for_cluster(cluster)
        assert cluster.id is not None
        with deps.uow_factory(principal.scope) as uow:
            reused = uow.backup_owners.reused(cluster.id) & set(mine)
        # a VMID that served another company's guest before: only runs since this guest was created are its own
        born = {vmid: hv.identity(mine[vmid].guest.ref).created or 0 for vmid in reused}
        nodes = sorted({s.node for s in hv.backup_stores()} | {o.guest.node for o in mine.values()})
        for node in nodes:
            for task in hv.tasks(node=node, typefilter="vzdump", since=since):
                if task.status is None:
                    continue
                out.extend(r for r in _outcomes(hv, task, mine) if r.started >= born.get(r.guest.guest.vmid, 0))
    out.sort(key=lambda r: (r.started, r.guest.guest.name), reverse=True)
    return _with_askers(deps, principal, out)


def _with_askers(deps: Deps, principal: Principal, runs: list[RunOutcome]) -> list[RunOutcome]:
    if not runs:
        return runs
    with deps.uow_factory(principal.scope, autocommit=True) as uow:
        askers = uow.jobs.askers(r.upid for r in runs)
    return [replace(r, asked_by=askers[r.upid].name or askers[r.upid].email) if r.upid in askers else r
            for r in runs]


def _outcomes(hv: Hypervisor, task: TaskInfo, mine: dict[int, inventory.OwnedGuest]) -> list[RunOutcome]:
    status = task.status or ""
    if task.id:
        if not task.id.isdigit() or int(task.id) not in mine:
            return []
        guest = mine[int(task.id)]
        if status == "OK":
            return [RunOutcome(guest, task.starttime, "ok", "", task.user, task.upid)]
        if status.startswith("WARNINGS:"):
            # the log's first WARN line says what to look at; the count alone does not
            why = _warned(hv.task_log(node=task.node, upid=task.upid)).get(guest.guest.vmid, status)
            return [RunOutcome(guest, task.starttime, "warnings", why, task.user, task.upid)]
        reason = _reasons(hv.task_log(node=task.node, upid=task.upid)).get(guest.guest.vmid, status)
        return [RunOutcome(guest, task.starttime, "failed", reason, task.user, task.upid)]
    lines = hv.task_log(node=task.node, upid=task.upid)
    started = _started(lines)
    if not started & set(mine):
        return []
    reasons = _reasons(lines)
    warned = _warned(lines)
    runs = []
    for vmid in sorted(started & set(mine)):
        if vmid in reasons:
            runs.append(RunOutcome(mine[vmid], task.starttime, "failed", reasons[vmid], task.user, task.upid))
        elif vmid in warned:
            runs.append(RunOutcome(mine[vmid], task.starttime, "warnings", warned[vmid], task.user, task.upid))
        else:
            runs.append(RunOutcome(mine[vmid], task.starttime, "ok", "", task.user, task.upid))
    return runs


def _started(lines: list[str]) -> set[int]:
    found = set()
    for line in lines:
        if line.startswith("INFO: Starting Backup of VM "):
            word = line.removeprefix("INFO: Starting Backup of VM ").split(" ", 1)[0]
            if word.isdigit():
                found.add(int(word))
    return found


def _reasons(lines: list[str]) -> dict[int, str]:
    found = {}
    for line in lines:
        if line.startswith("ERROR: Backup of VM ") and " failed - " in line:
            head, _, reason = line.partition(" failed - ")
            word = head.removeprefix("ERROR: Backup of VM ").strip()
            if word.isdigit():
                found[int(word)] = reason.strip()
    return found


def _warned(lines: list[str]) -> dict[int, str]:
    found: dict[int, str] = {}
    current: int | None = None
    for line in lines:
        if line.startswith("INFO: Starting Backup of VM "):
            word = line.removeprefix("INFO: Starting Backup of VM ").split(" ", 1)[0]
            current = int(word) if word.isdigit() else None
        elif line.startswith("WARN: ") and current is not None:
            found.setdefault(current, line.removeprefix("WARN: ").strip())
    return found
