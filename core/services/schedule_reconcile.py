"""Keeping a schedule's fixed VMIDs to the company's own guests, between runs.

A schedule made with ``--vms`` stores VMIDs in its Proxmox job, and Proxmox's scheduler backs up
whatever guest holds each VMID at the job's slot. When the provider moves one of those VMs into
another company's pool, or the VM is deleted outside pvebot and its VMID reused by another company,
the job would back up that company's guest. So the maintenance loop drops, from every pvebot-owned
job that selects by ``vmid``, each VMID whose guest is in no pool of the owning company.

Rules:

- Only a fresh, complete answer drops anything: the job list and the cluster's inventory are read in
  this pass (the inventory fetched after the pass began, never a cached one), and a cluster that does
  not answer changes nothing.
- A VMID is dropped only when that answer shows its guest in a pool that is not the company's (or in
  none). A VMID the answer does not list at all is kept: its pool is unknown (a token that may not audit
  every guest is not told of it), and once a guest holds it again the answer says whose it is.
- A job left with none of its VMIDs cannot simply lose them: Proxmox refuses a job with no selection
  (``vmid``, ``pool`` or ``all``). Keeping the old VMIDs in a disabled job would let anyone who enables
  it again (an operator in the web UI) back up the other company's guest. So the job is disabled
  (``enabled=0``: Proxmox's scheduler skips it, and nothing is backed up silently) and made to select the
  company's own pool, the one selection that can only ever reach the company's own guests; the company
  is told, and ``backup schedule edit <name> --vms …|--all`` enables it again. A company with no pool on
  that cluster any more keeps the VMIDs in the disabled job (there is no other selection to give it).
- Each change is audited (``backup.schedule.reconcile``, actor ``system``) and announced on the company's
  ``backups`` topic with the VMIDs dropped and why; the message names neither the other company nor the
  guest that holds a VMID now.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import BotError
from core.guest_index import GuestIndex
from core.model import BackupJob, Cluster, Company, Topic
from core.ports import Hypervisor
from core.principal import Scope
from core.services import audit, notifications
from core.services.backup_schedules import name_of, owner_slug
from core.services.deps import Deps

log = logging.getLogger(__name__)

ACTION = "backup.schedule.reconcile"
# the one reason given, whatever became of the guest: "moved" or "reused" would tell the company
# something about a guest that is no longer its own
REASON = "no longer in your company's pools"


@dataclass(frozen=True)
class Reconciled:
    """One job changed: the VMIDs it dropped and kept, and whether it was disabled for having none left."""

    cluster: str
    job_id: str
    name: str
    company_id: int
    dropped: tuple[int, ...]
    kept: tuple[int, ...]
    disabled: bool
    pool: str | None = None  # the pool a disabled job now selects


def foreign(job: BackupJob, index: GuestIndex, pools: set[str]) -> tuple[int, ...]:
    """The job's VMIDs that ``index`` shows in a pool outside ``pools`` (or in none); unlisted ones are kept."""
    dropped = []
    for vmid in job.vmids:
        guest = index.by_vmid(vmid)
        if guest is not None and guest.pool not in pools:
            dropped.append(vmid)
    return tuple(dropped)


def reconcile_cluster(deps: Deps, cluster: Cluster) -> list[Reconciled]:
    """Drop, from each pvebot-owned job of ``cluster`` that selects by VMID, the VMIDs not its company's.

    Args:
        deps: ports.
        cluster: the cluster whose jobs are looked at.

    Returns:
        The jobs changed, each audited and announced.

    Raises:
        BotError: the cluster did not answer the job list or the inventory; nothing was changed.
    """
    hv = deps.hypervisors.for_cluster(cluster)
    jobs = [j for j in hv.backup_jobs() if owner_slug(j) is not None and j.vmids]
    if not jobs:
        return []
    with deps.uow_factory(Scope.everything()) as uow:
        companies = {c.slug: c for c in uow.companies.list() if c.id is not None}
        pools: dict[int, list[str]] = {}
        for b in uow.pool_bindings.list():
            if b.cluster_id == cluster.id:
                pools.setdefault(b.company_id, []).append(b.pool)
    # fetched after this pass began: a cached answer may predate a move, a failed fetch raises
    index = hv.index(refresh=True)
    changed = []
    for job in jobs:
        company = companies.get(owner_slug(job) or "")
        if company is None or company.id is None:
            log.warning("backup job %s on %s names no company pvebot knows; left as it is", job.id, cluster.name)
            continue
        mine = sorted(pools.get(company.id, []))
        if not foreign(job, index, set(mine)):
            continue
        try:
            done = _narrow(hv, cluster, company, job, index=index, pools=mine)
        except BotError as e:
            log.warning("backup job %s on %s not narrowed: %s", job.id, cluster.name, e.user_message)
            continue
        if done is not None:
            _tell(deps, company, done)
            changed.append(done)
    return changed


def _narrow(hv: Hypervisor, cluster: Cluster, company: Company, job: BackupJob, *, index: GuestIndex,
            pools: list[str]) -> Reconciled | None:
    # read the job again just before changing it: an edit since the list was read is kept (Proxmox's
    # PUT /cluster/backup/{id} takes no digest to guard the write itself)
    current = next((j for j in hv.backup_jobs() if j.id == job.id), None)
    if current is None or not current.vmids:
        return None
    dropped = foreign(current, index, set(pools))
    if not dropped:
        return None
    kept = tuple(v for v in current.vmids if v not in dropped)
    assert company.id is not None
    if kept:
        hv.save_backup_job(current.id, schedule=None, options={"vmid": ",".join(map(str, kept))}, create=False)
        return Reconciled(cluster.name, current.id, name_of(current), company.id, dropped, kept, disabled=False)
    if pools:
        # selecting the pool drops the vmid list (Proxmox does so when pool is set; delete says it too)
        hv.save_backup_job(current.id, schedule=None, options={"enabled": "0", "pool": pools[0]}, create=False,
                           delete=["vmid"])
        return Reconciled(cluster.name, current.id, name_of(current), company.id, dropped, (), disabled=True,
                          pool=pools[0])
    hv.save_backup_job(current.id, schedule=None, options={"enabled": "0"}, create=False)
    return Reconciled(cluster.name, current.id, name_of(current), company.id, dropped, (), disabled=True)


def message(done: Reconciled) -> tuple[str, str]:
    """The title and text the company's ``backups`` subscribers get."""
    dropped = ", ".join(map(str, done.dropped))
    title = f"⚠️ schedule {done.name} on {done.cluster}: VMID {dropped} removed ({REASON})"
    if not done.disabled:
        text = (f"pvebot removed VMID {dropped} from schedule {done.name}: {REASON}, so its backup job would have "
                f"backed up a guest that is not yours. It still backs up VMID {', '.join(map(str, done.kept))}.")
    else:
        title = f"⚠️ schedule {done.name} on {done.cluster} disabled: VMID {dropped} {REASON}"
        text = (f"pvebot removed VMID {dropped} from schedule {done.name}: {REASON}. None of its VMs is left, so "
                "the schedule is disabled and backs up nothing until you choose its VMs again with "
                f"`backup schedule edit {done.name} --vms …` or `--all`.")
    return title[:300], text


def _tell(deps: Deps, company: Company, done: Reconciled) -> None:
    title, text = message(done)
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        audit.record(uow, clock=deps.clock, actor="system", action=ACTION, company_id=done.company_id,
                     target=f"schedule {done.name}",
                     detail={"cluster": done.cluster, "job": done.job_id, "dropped": list(done.dropped),
                             "kept": list(done.kept), "disabled": done.disabled, "pool": done.pool,
                             "reason": REASON})
        notifications.record(uow, notifications.Event(
            topic=Topic.BACKUPS, key=f"schedule-reconcile:{done.cluster}:{done.job_id}:{now.isoformat()}",
            company_id=done.company_id, failed=done.disabled, title=title, text=text), clock=deps.clock)
        uow.commit()
    log.info("backup job %s of %s on %s: dropped VMIDs %s%s", done.job_id, company.slug, done.cluster,
             ",".join(map(str, done.dropped)), " and disabled it" if done.disabled else "")


def reconcile_all(deps: Deps, *, only: Callable[[Cluster], bool] | None = None) -> list[Reconciled]:
    """:func:`reconcile_cluster` for every cluster (``only``: those it admits); one that does not answer is
    logged and changes nothing."""
    with deps.uow_factory(Scope.everything()) as uow:
        clusters = [c for c in uow.clusters.list() if only is None or only(c)]
    changed: list[Reconciled] = []
    for cluster in clusters:
        try:
            changed += reconcile_cluster(deps, cluster)
        except BotError as e:
            log.warning("backup schedules of cluster %s not checked: %s", cluster.name, e.user_message)
    return changed
