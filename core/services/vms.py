"""VM use cases behind the chat commands: look, operate, create, snapshot."""

from __future__ import annotations

import re
from typing import Any

from core import rbac
from core.chat import ConversationRef
from core.errors import Conflict, InvalidArguments, NotFound
from core.model import Company, GuestStatus, Job, Snapshot
from core.principal import Principal
from core.services import inventory, requests, targets
from core.services.deps import Deps
from core.services.operations import Target, TargetKind
from core.services.requests import Outcome, operate

__all__ = ["Outcome", "operate", "status", "snapshots", "create"]

_SNAPSHOT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,39}$")  # Proxmox's pve-configid, kept short
_SIZE = re.compile(r"^(\d+)\s*([MGT]?)i?B?$", re.IGNORECASE)


def status(deps: Deps, principal: Principal, ref: str) -> tuple[inventory.OwnedGuest, GuestStatus, Job | None]:
    """A VM's live status and the last job pvebot ran on it."""
    owned = inventory.find(deps, principal, ref, refresh=True)
    detail = deps.hypervisors.for_cluster(owned.cluster).status(owned.guest.ref)
    with deps.uow_factory(principal.scope) as uow:
        recent = uow.jobs.list(limit=200)
    last = next((j for j in recent if j.target.get("cluster") == owned.cluster.name
                 and int(j.target.get("vmid", 0)) == owned.guest.vmid), None)
    return owned, detail, last


def snapshots(deps: Deps, principal: Principal, ref: str) -> tuple[inventory.OwnedGuest, list[Snapshot]]:
    rbac.require(principal, rbac.Perm.SNAPSHOT_READ)
    owned = inventory.find(deps, principal, ref)
    return owned, deps.hypervisors.for_cluster(owned.cluster).snapshots(owned.guest.ref)


def check_snapshot_name(name: str) -> str:
    if not _SNAPSHOT_NAME.match(name):
        raise InvalidArguments(f"'{name[:40]}' is not a snapshot name: a letter, then letters, digits, - or _")
    return name


def parse_size_mb(text: str, *, what: str) -> int:
    """``4G`` / ``4096M`` / ``4096`` (MB) to megabytes."""
    m = _SIZE.match(text.strip())
    if not m:
        raise InvalidArguments(f"{what} '{text[:20]}' is not a size like 4G or 2048M")
    value, unit = int(m.group(1)), m.group(2).upper()
    mb = value * {"": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]
    if mb <= 0:
        raise InvalidArguments(f"{what} must be more than zero")
    return mb


def parse_disk_growth(text: str) -> tuple[str, int]:
    """``+10G`` (grow by) or ``32G`` (grow to) as Proxmox takes it, and the GB it adds at most."""
    raw = text.strip()
    grow_by = raw.startswith("+")
    m = _SIZE.match(raw.lstrip("+"))
    if not m or (m.group(2) or "G").upper() not in ("G", "T"):
        raise InvalidArguments(f"disk '{text[:20]}' is not a size like +10G or 64G")
    gb = int(m.group(1)) * (1024 if (m.group(2) or "G").upper() == "T" else 1)
    if gb <= 0:
        raise InvalidArguments("disk size must be more than zero")
    return (f"+{gb}G" if grow_by else f"{gb}G"), gb


def create(
    deps: Deps,
    principal: Principal,
    *,
    name: str,
    template: str,
    cores: int | None,
    memory_mb: int | None,
    disk: str | None,
    cluster: str | None,
    conversation: ConversationRef,
    request_id: str,
) -> Outcome:
    """Clone ``template`` into the caller's company pool, within its quotas."""
    rbac.require(principal, rbac.Perm.VM_CREATE)
    if principal.company_id is None:
        raise InvalidArguments("only a member of a company creates VMs (super_admins: use a company account)")
    rbac.require(principal, rbac.Perm.VM_CREATE, principal.company_id)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$", name):
        raise InvalidArguments(f"'{name[:40]}' is not a valid VM name (letters, digits, . and -)")
    if cores is not None and not 1 <= cores <= 512:
        raise InvalidArguments("cores must be from 1 to 512")
    view = inventory.view(deps, principal, refresh=True, cluster=cluster)
    mine = [o for o in view.guests if o.company_id == principal.company_id]
    if any(o.guest.name.lower() == name.lower() for o in mine):
        raise Conflict(f"you already have a VM named {name}")
    tpl = inventory.resolve(view.templates, template, what="template")
    bindings = [b for b in _bindings(deps, principal) if b[0] == tpl.cluster.id]
    if not bindings:
        raise NotFound(f"template '{template[:40]}' not found")
    company = view.companies.get(principal.company_id)
    disk_arg, disk_gb = parse_disk_growth(disk) if disk else (None, 0)
    _check_quota(company.quotas if company else {}, mine, tpl, cores=cores, memory_mb=memory_mb, disk_gb=disk_gb,
                 grow_by=bool(disk_arg and disk_arg.startswith("+")))
    params: dict[str, Any] = {"name": name, "pool": bindings[0][1]}
    if cores is not None:
        params["cores"] = cores
    if memory_mb is not None:
        params["memory_mb"] = memory_mb
    if disk_arg:
        params["disk"] = disk_arg
    identity = deps.hypervisors.for_cluster(tpl.cluster).identity(tpl.guest.ref)
    target = Target(kind=TargetKind.TEMPLATE, label=tpl.label, company=company, cluster=tpl.cluster,
                    guest=tpl.guest, record=targets.guest_record(tpl, identity))
    # the new VM is the caller's company's, whoever owns the (shared) template
    return requests.submit(deps, principal, action="vm.create", target=target, params=params,
                           conversation=conversation, request_id=request_id, company_id=principal.company_id,
                           summary=f"create {name} from {tpl.guest.name} on {tpl.cluster.name}")


def _bindings(deps: Deps, principal: Principal) -> list[tuple[int, str]]:
    with deps.uow_factory(principal.scope) as uow:
        return [(b.cluster_id, b.pool) for b in uow.pool_bindings.list() if b.company_id == principal.company_id]


def _check_quota(
    quotas: dict[str, int],
    mine: list[inventory.OwnedGuest],
    tpl: inventory.OwnedGuest,
    *,
    cores: int | None,
    memory_mb: int | None,
    disk_gb: int,
    grow_by: bool,
) -> None:
    gib = 1024**3
    new_cores = cores or tpl.guest.maxcpu or 1
    new_mem_gb = (memory_mb / 1024) if memory_mb else tpl.guest.maxmem / gib
    new_disk_gb = tpl.guest.maxdisk / gib + disk_gb if grow_by else max(disk_gb, tpl.guest.maxdisk / gib)
    used = {
        "vms": len(mine),
        "cores": sum(o.guest.maxcpu for o in mine),
        "memory_gb": sum(o.guest.maxmem for o in mine) / gib,
        "disk_gb": sum(o.guest.maxdisk for o in mine) / gib,
    }
    wanted = {"vms": 1, "cores": new_cores, "memory_gb": new_mem_gb, "disk_gb": new_disk_gb}
    for key, limit in quotas.items():
        if key in wanted and used[key] + wanted[key] > limit:
            raise Conflict(
                f"quota exceeded: {key} would be {used[key] + wanted[key]:.0f} of {limit} "
                f"(in use {used[key]:.0f}); ask your administrator"
            )


def check_new_guest_quota(company: Company | None, mine: list[inventory.OwnedGuest],
                          like: inventory.OwnedGuest | None) -> None:
    """Refuse a new guest (a restore as new VM) the company's quotas have no room for.

    Args:
        company: whose quotas apply.
        mine: the company's guests now.
        like: the guest the new one copies (its size counts), or None when only the count is known.

    Raises:
        Conflict: a quota would be exceeded.
    """
    quotas = company.quotas if company else {}
    if like is not None:
        _check_quota(quotas, mine, like, cores=None, memory_mb=None, disk_gb=0, grow_by=True)
    elif "vms" in quotas and len(mine) + 1 > quotas["vms"]:
        raise Conflict(f"quota exceeded: vms would be {len(mine) + 1} of {quotas['vms']} (in use {len(mine)}); "
                       "ask your administrator")
