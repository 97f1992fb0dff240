"""Company quotas on VMs, cores, memory and disk, held under concurrency.

What a ``vm create`` (or a restore as a new VM) will use is reserved when the request is accepted: it
travels in the job's params and counts against the quota until the job ends. The check and the job's
record happen in one transaction that holds the company's row lock, so concurrent requests are decided one after the
other; the job checks again right before it clones. A guest a running create already cloned is
counted once: by its name (unique within a company), not as both a guest and a reservation.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from core.errors import Conflict
from core.model import Job, JobState
from core.ports import UnitOfWork
from core.services import inventory

GIB = 1024**3
KEYS = ("vms", "cores", "memory_gb", "disk_gb")


def reservation(
    tpl: inventory.OwnedGuest, *, cores: int | None, memory_mb: int | None, disk_gb: int, grow_by: bool
) -> dict[str, float]:
    """What a clone of ``tpl`` with these changes will use once created."""
    disk = tpl.guest.maxdisk / GIB + disk_gb if grow_by else max(disk_gb, tpl.guest.maxdisk / GIB)
    return {"vms": 1, "cores": cores or tpl.guest.maxcpu or 1,
            "memory_gb": (memory_mb / 1024) if memory_mb else tpl.guest.maxmem / GIB, "disk_gb": disk}


# the jobs that make a new guest and carry its reservation: a clone, or a backup restored as a new VM
MAKERS = ("vm.create", "backup.restore")


def new_name(job: Job) -> str:
    """The name of the guest a making job creates (``vm.create``'s name, a restore's ``as_new``)."""
    return str(job.params.get("name") or job.params.get("as_new") or "").lower()


def in_flight(uow: UnitOfWork, company_id: int, *, before: Job | None = None) -> list[Job]:
    """The company's jobs making a new guest, not yet ended (only those made before ``before``, when given)."""
    jobs = [j for j in uow.jobs.list(states=[JobState.QUEUED, JobState.RUNNING], limit=1000)
            if j.action in MAKERS and j.company_id == company_id and "reserve" in j.params]
    if before is not None:
        jobs = [j for j in jobs if j.id != before.id and j.created_at <= before.created_at]
    return jobs


def check(
    quotas: dict[str, int], *, mine: list[inventory.OwnedGuest], pending: Iterable[Job], wanted: dict[str, Any]
) -> None:
    """Refuse when the company's guests, the creates under way and ``wanted`` would pass a quota.

    Raises:
        Conflict: a quota would be exceeded; the message says which and by how much.
    """
    pending = list(pending)
    being_made = {new_name(j) for j in pending}
    existing = [o for o in mine if o.guest.name.lower() not in being_made]
    used = {
        "vms": len(existing),
        "cores": sum(o.guest.maxcpu for o in existing),
        "memory_gb": sum(o.guest.maxmem for o in existing) / GIB,
        "disk_gb": sum(o.guest.maxdisk for o in existing) / GIB,
    }
    reserved = {key: sum(float(j.params["reserve"].get(key, 0)) for j in pending) for key in KEYS}
    for key, limit in quotas.items():
        if key not in KEYS:
            continue
        total = used[key] + reserved[key] + float(wanted.get(key, 0))
        if total > limit:
            being = f", {reserved[key]:.0f} being created" if reserved[key] else ""
            raise Conflict(f"quota exceeded: {key} would be {total:.0f} of {limit} (in use {used[key]:.0f}{being}); "
                           "ask your administrator")
