"""Backup schedules: Proxmox cluster backup jobs that pvebot owns for a company.

A Proxmox backup job is a cluster-wide object any admin token sees, so tenancy is pvebot's: a
company's job is ``pvebot-<company>-<name>`` (names have no ``-``, so the company part is never
ambiguous), selects only the company's guests (``--all`` is its pool, which follows the pool as it
grows), keeps ``prune-backups`` from the retention flags and sends through the notification system.
Between runs, :mod:`core.services.schedule_reconcile` keeps a ``--vms`` job's VMIDs to the company's own.
Every other job — an operator's own included — is nobody's but a super_admin's to see.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from core import rbac
from core.errors import Conflict, InvalidArguments, NotFound
from core.model import BackupJob, Cluster, Company, TaskRef
from core.ports import Hypervisor
from core.principal import Principal
from core.rbac import Perm
from core.services import audit, inventory
from core.services.backups import allowed_storages, check_storage
from core.services.deps import Deps
from core.services.operations import Operation, Step, Target, TargetKind

PREFIX = "pvebot-"
NAME = re.compile(r"^[a-z][a-z0-9_]{0,19}$")
RETENTION = ("keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")
MODES = ("snapshot", "suspend", "stop")
# the keys of a job that say when and whether it runs, not what vzdump does
JOB_ONLY = ("schedule", "enabled", "comment", "repeat-missed", "node", "type", "id", "next-run")
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)"
_TIME = r"(\d{1,2}:\d{2})"
# the plain forms people type, and the Proxmox calendar event each one means
PLAIN_FORMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(rf"^(?:daily|every day|nightly)\s+{_TIME}$"), "{0}"),
    (re.compile(rf"^(?:weekdays|workdays)\s+{_TIME}$"), "mon..fri {0}"),
    (re.compile(rf"^weekends?\s+{_TIME}$"), "sat,sun {0}"),
    (re.compile(rf"^weekly\s+({_DAY})\s+{_TIME}$"), "{0} {1}"),
    (re.compile(rf"^(?:every\s+)?({_DAY})\s+(?:at\s+)?{_TIME}$"), "{0} {1}"),
)


def job_id(company: Company, name: str) -> str:
    return f"{PREFIX}{company.slug}-{name}"


def owner_slug(job: BackupJob) -> str | None:
    """The company slug a job id names, or None for a job pvebot does not own."""
    if not job.id.startswith(PREFIX) or "-" not in job.id[len(PREFIX):]:
        return None
    slug, _, name = job.id[len(PREFIX):].rpartition("-")
    return slug if NAME.match(name) and slug else None


def name_of(job: BackupJob) -> str:
    return job.id.rpartition("-")[2] if owner_slug(job) else job.id


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidArguments("a schedule name starts with a letter, then lower-case letters, digits or _ "
                               "(at most 20; no '-')")
    return name


def translate_when(text: str) -> str:
    """Proxmox's calendar event for what the user typed: a plain form, or Proxmox's own syntax as is."""
    plain = " ".join(text.strip().lower().split())
    for pattern, template in PLAIN_FORMS:
        m = pattern.match(plain)
        if m:
            return template.format(*m.groups())
    return plain


def analyze(hv: Hypervisor, when: str) -> tuple[str, list[int]]:
    """(Proxmox's form of ``when``, its next three runs), as Proxmox reads it.

    Raises:
        InvalidArguments: Proxmox does not understand it; the line says how to write one.
    """
    schedule = translate_when(when)
    try:
        return schedule, hv.analyze_schedule(schedule, iterations=3)
    except InvalidArguments as e:
        raise InvalidArguments(
            f"--when '{when[:60]}' is not a schedule Proxmox understands. Write e.g. 'daily 02:00', "
            "'weekdays 22:30', 'weekly sun 03:00', or Proxmox's own 'mon..fri 22:30' or 'sat 03:00'"
        ) from e


@dataclass(frozen=True)
class Schedule:
    job: BackupJob
    cluster: Cluster
    company: Company | None
    selection: str
    next_runs: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return name_of(self.job)


def _selection(job: BackupJob, guests: dict[int, str]) -> str:
    if job.options.get("pool"):
        return f"all VMs of pool {job.options['pool']}"
    if job.options.get("all") == "1":
        return "every guest of the cluster"
    return ", ".join(guests.get(v, str(v)) for v in job.vmids) or "nothing"


def _company_clusters(deps: Deps, principal: Principal, company: Company) -> list[tuple[Cluster, str]]:
    with deps.uow_factory(principal.scope) as uow:
        clusters = {c.id: c for c in uow.clusters.list()}
        return sorted(((clusters[b.cluster_id], b.pool) for b in uow.pool_bindings.list()
                       if b.company_id == company.id and b.cluster_id in clusters), key=lambda p: p[0].name)


def list_schedules(deps: Deps, principal: Principal) -> list[Schedule]:
    """The backup jobs in scope: a company's own, or every job with its owner for a super_admin."""
    rbac.require(principal, Perm.BACKUP_READ)
    seen = inventory.view(deps, principal)
    by_slug = {c.slug: c for c in seen.companies.values()}
    out = []
    for cluster in seen.clusters:
        names = {o.guest.vmid: o.guest.name for o in seen.guests if o.cluster.id == cluster.id}
        for job in deps.hypervisors.for_cluster(cluster).backup_jobs():
            slug = owner_slug(job)
            company = by_slug.get(slug) if slug else None
            if company is None and not principal.scope.unrestricted:
                continue  # another company's job, or an operator's: not there for this caller
            out.append(Schedule(job, cluster, company, _selection(job, names)))
    return sorted(out, key=lambda s: (s.company.slug if s.company else "~", s.name))


@dataclass(frozen=True)
class ScheduleRequest:
    """What ``create`` / ``edit`` were given; None leaves a setting as it is (edit) or at its default."""

    when: str | None = None
    vms: tuple[str, ...] | None = None
    all: bool = False
    storage: str | None = None
    mode: str | None = None
    retention: dict[str, int] | None = None
    # where a new schedule's job goes, when the company has pools on several clusters
    cluster: str | None = None
    # the pool ``all`` backs up, when the company has several on the cluster (a Proxmox job selects one)
    pool: str | None = None


def _company(deps: Deps, principal: Principal) -> Company:
    rbac.require(principal, Perm.BACKUP_SCHEDULE)
    if principal.company_id is None:
        raise InvalidArguments("schedules belong to a company: use a company account")
    rbac.require(principal, Perm.BACKUP_SCHEDULE, principal.company_id)
    with deps.uow_factory(principal.scope) as uow:
        company = uow.companies.get(principal.company_id)
    assert company is not None
    return company


def _new_home(deps: Deps, principal: Principal, company: Company, wanted: str | None) -> Cluster:
    """The cluster a new schedule's job goes to: the company's only one, or the one named."""
    clusters = {c.name: c for c, _pool in _company_clusters(deps, principal, company)}
    if not clusters:
        raise NotFound("your company has no pool on any cluster yet")
    if wanted is not None:
        if wanted not in clusters:
            raise NotFound(f"your company has no pool on a cluster '{wanted[:40]}' (it has: {', '.join(clusters)})")
        return clusters[wanted]
    if len(clusters) > 1:
        # one Proxmox job lives on one cluster: guessing would leave the other cluster's VMs unprotected
        raise InvalidArguments(f"your company has VMs on clusters {', '.join(clusters)}: say which with --cluster "
                               "(one schedule for each)")
    return next(iter(clusters.values()))


def _pool_for_all(pools: list[str], wanted: str | None, cluster: Cluster) -> str:
    """The one pool an ``--all`` schedule selects on ``cluster``."""
    if wanted is not None:
        if wanted not in pools:
            raise NotFound(f"'{wanted[:40]}' is not one of your company's pools on {cluster.name} "
                           f"(they are: {', '.join(pools)})")
        return wanted
    if len(pools) > 1:
        # a Proxmox backup job selects one pool: taking the first would silently leave the others out
        raise InvalidArguments(f"--all backs up one pool, and your company has {len(pools)} on {cluster.name} "
                               f"({', '.join(pools)}): say which with --pool (one schedule for each), or name "
                               "the VMs with --vms")
    return pools[0]


def _pools_on(deps: Deps, principal: Principal, company: Company, cluster: Cluster) -> list[str]:
    return [pool for c, pool in _company_clusters(deps, principal, company) if c.id == cluster.id]


def _with_job(deps: Deps, principal: Principal, company: Company, name: str) -> tuple[Cluster, BackupJob]:
    """The cluster holding the company's schedule ``name``, and its job: whichever of its clusters that is."""
    check_name(name)
    for cluster in dict.fromkeys(c for c, _pool in _company_clusters(deps, principal, company)):
        found = [j for j in deps.hypervisors.for_cluster(cluster).backup_jobs() if j.id == job_id(company, name)]
        if found:
            return cluster, found[0]
    raise NotFound(f"schedule '{name}' not found")


def _options(deps: Deps, principal: Principal, *, company: Company, cluster: Cluster, hv: Hypervisor,
             req: ScheduleRequest, creating: bool) -> tuple[dict[str, str], list[str]]:
    options: dict[str, str] = {}
    removed: list[str] = []
    if req.mode is not None:
        if req.mode not in MODES:
            raise InvalidArguments(f"--mode is one of {', '.join(MODES)}")
        options["mode"] = req.mode
    elif creating:
        options["mode"] = "snapshot"
    storage = req.storage
    if storage is None and creating:
        allowed = allowed_storages(company)
        storage = allowed[0] if allowed else next((s.storage for s in hv.backup_stores()), None)
        if storage is None:
            raise NotFound("no storage of the cluster holds backups")
    if storage is not None:
        check_storage(company, storage)
        options["storage"] = storage
    if req.pool is not None and not req.all:
        raise InvalidArguments("--pool goes with --all: the pool whose VMs the schedule backs up")
    if req.all:
        # the pool, not today's VMs: a VM added later is backed up too
        options["pool"] = _pool_for_all(_pools_on(deps, principal, company, cluster), req.pool, cluster)
        removed.append("vmid")
    elif req.vms is not None:
        seen = inventory.view(deps, principal, cluster=cluster.name)
        mine = [o for o in seen.guests if o.company_id == company.id]
        picked = sorted({inventory.resolve(mine, ref).guest.vmid for ref in req.vms if ref})
        if not picked:
            raise InvalidArguments("--vms names at least one VM (or use --all)")
        options["vmid"] = ",".join(str(v) for v in picked)
        removed.append("pool")
    elif creating:
        raise InvalidArguments("say which VMs: --vms web-01,db-01 or --all")
    retention = req.retention if req.retention else (
        dict(company.backup_policy.get("default_retention") or {}) if creating else None)
    if retention:
        options["prune-backups"] = ",".join(f"{k}={int(v)}" for k, v in sorted(retention.items(),
                                                                              key=lambda kv: RETENTION.index(kv[0])))
    if creating:
        # a job with mailto and the default mode mails and skips the notification targets pvebot listens on
        options["notification-mode"] = "notification-system"
        options["enabled"] = "1"
        options["comment"] = f"pvebot schedule of {company.slug}"
    return options, removed


def create(deps: Deps, principal: Principal, *, name: str, req: ScheduleRequest) -> Schedule:
    """Create the company's schedule ``name`` as one Proxmox backup job.

    Raises:
        InvalidArguments: a bad name, calendar event, storage, mode or selection.
        Conflict: the company has that schedule already, or as many as its policy allows.
        PermissionDenied: the role may not manage schedules, or the cluster token lacks Sys.Modify on /.
    """
    company = _company(deps, principal)
    check_name(name)
    cluster = _new_home(deps, principal, company, req.cluster)
    hv = deps.hypervisors.for_cluster(cluster)
    if not req.when:
        raise InvalidArguments("--when is required, e.g. --when \"daily 02:00\"")
    schedule, runs = analyze(hv, req.when)
    # one name is one schedule across the company's clusters, and the policy's limit counts them all
    homes = dict.fromkeys(c for c, _pool in _company_clusters(deps, principal, company))
    jobs = [(c, j) for c in homes for j in deps.hypervisors.for_cluster(c).backup_jobs()
            if owner_slug(j) == company.slug]
    elsewhere = next((c for c, j in jobs if j.id == job_id(company, name)), None)
    if elsewhere is not None:
        raise Conflict(f"your company has a schedule '{name}' already (on {elsewhere.name}); change it with "
                       "backup schedule edit")
    limit = company.backup_policy.get("max_schedules")
    if limit is not None and len(jobs) >= int(limit):
        raise Conflict(f"your company has {len(jobs)} schedules, the most it may have ({limit}); delete one first")
    options, _ = _options(deps, principal, company=company, cluster=cluster, hv=hv, req=req, creating=True)
    hv.save_backup_job(job_id(company, name), schedule=schedule, options=options, create=True)
    _audit(deps, principal, company, "backup.schedule.create", name, {"schedule": schedule, **options})
    return _fresh(deps, principal, hv, cluster, company, job_id(company, name), runs)


def edit(deps: Deps, principal: Principal, *, name: str, req: ScheduleRequest) -> Schedule:
    """Change the company's schedule ``name`` in place (only what was given)."""
    company = _company(deps, principal)
    cluster, current = _with_job(deps, principal, company, name)
    if req.cluster is not None and req.cluster != cluster.name:
        raise InvalidArguments(f"schedule {name} is on {cluster.name}: a schedule does not move between clusters "
                               "(create one there, then delete this one)")
    hv = deps.hypervisors.for_cluster(cluster)
    schedule, runs = analyze(hv, req.when) if req.when else (current.schedule, hv.analyze_schedule(
        current.schedule, iterations=3))
    options, removed = _options(deps, principal, company=company, cluster=cluster, hv=hv, req=req, creating=False)
    removed = [k for k in removed if k in current.options]
    if not current.enabled and (req.all or req.vms is not None):
        # a new selection is what the notice of a schedule disabled for having none of its VMs left asks for
        options["enabled"] = "1"
    hv.save_backup_job(current.id, schedule=schedule, options=options, create=False, delete=removed)
    _audit(deps, principal, company, "backup.schedule.edit", name, {"schedule": schedule, **options})
    return _fresh(deps, principal, hv, cluster, company, current.id, runs)


def _own_job(hv: Hypervisor, company: Company, name: str) -> BackupJob:
    check_name(name)
    found = [j for j in hv.backup_jobs() if j.id == job_id(company, name)]
    if not found:
        raise NotFound(f"schedule '{name}' not found")
    return found[0]


def _fresh(deps: Deps, principal: Principal, hv: Hypervisor, cluster: Cluster, company: Company, jid: str,
           runs: list[int]) -> Schedule:
    job = next(j for j in hv.backup_jobs() if j.id == jid)
    seen = inventory.view(deps, principal, cluster=cluster.name)
    names = {o.guest.vmid: o.guest.name for o in seen.guests}
    return Schedule(job, cluster, company, _selection(job, names), tuple(runs))


def _audit(deps: Deps, principal: Principal, company: Company, action: str, name: str,
           detail: dict[str, Any]) -> None:
    with deps.uow_factory(principal.scope) as uow:
        audit.record(uow, clock=deps.clock, actor=principal.actor, action=action, company_id=company.id,
                     target=f"schedule {name}", detail=detail)
        uow.commit()


# ---- the schedule as an operation's target (delete, run) ------------------------------


class ScheduleTarget:
    """The caller's company's schedule, by name; another company's or an operator's answers like none."""

    kind = TargetKind.SCHEDULE

    def resolve(self, deps: Deps, principal: Principal, ref: str) -> Target:
        if principal.company_id is None:
            raise InvalidArguments("schedules belong to a company: use a company account")
        with deps.uow_factory(principal.scope) as uow:
            company = uow.companies.get(principal.company_id)
        if company is None:
            raise NotFound(f"schedule '{ref[:40]}' not found")
        cluster, job = _with_job(deps, principal, company, ref)
        record = {"cluster": cluster.name, "cluster_id": cluster.id, "job_id": job.id, "name": ref,
                  "schedule": job.schedule, "detail": f"backup job {job.id} on {cluster.name}",
                  "pools": _pools_on(deps, principal, company, cluster)}
        return Target(kind=self.kind, label=f"schedule {ref}", company=company, record=record, cluster=cluster)

    def recheck(self, deps: Deps, principal: Principal, record: dict[str, Any], *, company_id: int,
                fresh: bool) -> Target:
        with deps.uow_factory(principal.scope) as uow:
            company = uow.companies.get(company_id)
            cluster = uow.clusters.by_name(record["cluster"])
        if company is None or cluster is None:
            raise NotFound(f"schedule {record['name']} is gone or no longer yours")
        _own_job(deps.hypervisors.for_cluster(cluster), company, record["name"])
        # the company's pools as they are now: a run backs up only what is the company's when it runs
        pools = _pools_on(deps, principal, company, cluster)
        return Target(kind=self.kind, label=f"schedule {record['name']}", company=company,
                      record=record | {"pools": pools}, cluster=cluster)

    def replaced(self, deps: Deps, target: Target) -> str | None:
        return None


SCHEDULE = ScheduleTarget()


def _delete(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    assert hv is not None

    def call() -> TaskRef:
        hv.delete_backup_job(target.record["job_id"])
        return TaskRef(cluster=hv.cluster_name, node="", upid=None)

    yield Step("delete schedule", call)


def _run(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    assert hv is not None
    job = next((j for j in hv.backup_jobs() if j.id == target.record["job_id"]), None)
    if job is None:
        raise NotFound(f"{target.label} no longer exists")
    options = {k: v for k, v in job.options.items() if k not in JOB_ONLY}
    guests = [g for g in hv.inventory() if not g.template]
    if job.vmids:
        # the job names VMIDs, and a VMID may have gone to another company since (the provider moved the
        # VM, or it was deleted outside pvebot and its VMID reused): back up only the company's own
        pools = set(target.record.get("pools") or ())
        mine = sorted(g.vmid for g in guests if g.vmid in set(job.vmids) and g.pool in pools)
        if not mine:
            raise Conflict(f"none of the VMs of {target.label} is your company's now; edit it with --vms or --all")
        options["vmid"] = ",".join(str(v) for v in mine)
    # as Proxmox's "Run now": vzdump with the job's options on every node; each backs up its own guests
    for node in sorted({g.node for g in guests}):
        yield Step(f"backup on {node}", _run_on(hv, node, options))


def _run_on(hv: Hypervisor, node: str, options: dict[str, str]) -> Any:
    def call() -> TaskRef:
        return hv.run_backup(node=node, options=options) or TaskRef(cluster=hv.cluster_name, node=node, upid=None)

    return call


def _schedule_facts(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    return [("Proxmox job", str(target.record["job_id"])), ("Schedule", str(target.record.get("schedule", "")))]


OPERATIONS: tuple[Operation, ...] = (
    Operation("backup.schedule.delete", Perm.BACKUP_SCHEDULE, "delete", "Delete a backup schedule.", SCHEDULE,
              _delete, preview=_schedule_facts, approval=True),
    Operation("backup.schedule.run", Perm.BACKUP_SCHEDULE, "run", "Run a backup schedule now, with progress.",
              SCHEDULE, _run, preview=_schedule_facts),
)
