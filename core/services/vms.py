"""VM use cases behind the chat commands: look, operate, create, snapshot."""

from __future__ import annotations

import re
from typing import Any

from core import rbac
from core.chat import ConversationRef
from core.errors import BotError, Conflict, InvalidArguments, NotFound
from core.model import Company, GuestStatus, Job, JobBrief, Snapshot
from core.ports import UnitOfWork
from core.principal import Principal
from core.services import inventory, ipam, quotas, requests, targets, templates
from core.services.deps import Deps
from core.services.operations import Target, TargetKind
from core.services.requests import Outcome, operate

__all__ = ["Outcome", "operate", "status", "snapshots", "create"]

_SNAPSHOT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{1,39}$")  # Proxmox's pve-configid, kept short
MIN_MEMORY_MB = 16
MAX_MEMORY_MB = 4 * 1024 * 1024  # qemu-server's maximum for memory, 4 TiB
_SIZE = re.compile(r"^(\d+)\s*([MGT]?)i?B?$", re.IGNORECASE)


def status(deps: Deps, principal: Principal, ref: str) -> tuple[inventory.OwnedGuest, GuestStatus, JobBrief | None]:
    """A VM's live status and the last job pvebot ran on it."""
    # a read: the cached inventory (never older than its bound) names the guest; Proxmox's live
    # answer says how it is. Only when either says "not found" (a guest made, moved or renamed
    # since the last refresh) do we pay for a fresh inventory before answering so.
    try:
        owned = inventory.find(deps, principal, ref)
        detail = deps.hypervisors.for_cluster(owned.cluster).status(owned.guest.ref)
    except NotFound:
        owned = inventory.find(deps, principal, ref, refresh=True)
        detail = deps.hypervisors.for_cluster(owned.cluster).status(owned.guest.ref)
    with deps.uow_factory(principal.scope, autocommit=True) as uow:
        last = uow.jobs.last_for(cluster=owned.cluster.name, vmid=owned.guest.vmid)
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
    net: str | None = None,
) -> Outcome:
    """Clone ``template`` into the caller's company pool, within its quotas; ``net`` names a range to address it.

    The address is taken now (a full range answers at once) and given to the VM once it exists.
    """
    rbac.require(principal, rbac.Perm.VM_CREATE)
    if principal.company_id is None:
        raise InvalidArguments("only a member of a company creates VMs (super_admins: use a company account)")
    rbac.require(principal, rbac.Perm.VM_CREATE, principal.company_id)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$", name):
        raise InvalidArguments(f"'{name[:40]}' is not a valid VM name (letters, digits, . and -)")
    if cores is not None and not 1 <= cores <= 512:
        raise InvalidArguments("cores must be from 1 to 512")
    # Proxmox's own bounds (qemu-server and pct: memory from 16 MiB): refused here, before anything is cloned
    if memory_mb is not None and not MIN_MEMORY_MB <= memory_mb <= MAX_MEMORY_MB:
        raise InvalidArguments(f"memory must be from {MIN_MEMORY_MB}M to {MAX_MEMORY_MB // 1024 // 1024}T, "
                               f"got {memory_mb}M")
    view = inventory.view(deps, principal, refresh=True, cluster=cluster)
    mine = [o for o in view.guests if o.company_id == principal.company_id]
    if any(o.guest.name.lower() == name.lower() for o in mine):
        raise Conflict(f"you already have a VM named {name}")
    tpl = templates.find(templates.usable(view, principal), template)
    bindings = [b for b in _bindings(deps, principal) if b[0] == tpl.cluster.id]
    if not bindings:
        raise NotFound(f"template '{template[:40]}' not found")
    company = view.companies.get(principal.company_id)
    disk_arg, disk_gb = parse_disk_growth(disk) if disk else (None, 0)
    reserve = quotas.reservation(tpl, cores=cores, memory_mb=memory_mb, disk_gb=disk_gb,
                                 grow_by=bool(disk_arg and disk_arg.startswith("+")))
    limits = company.quotas if company else {}
    company_id = principal.company_id

    def admit(uow: UnitOfWork) -> None:
        # concurrent creates of one company are decided one after the other, each seeing the others'
        # reservations: seven at once cannot all fit in the room left for three
        uow.companies.lock(company_id)
        quotas.check(limits, mine=mine, pending=quotas.in_flight(uow, company_id), wanted=reserve)

    params: dict[str, Any] = {"name": name, "pool": bindings[0][1], "reserve": reserve}
    if cores is not None:
        params["cores"] = cores
    if memory_mb is not None:
        params["memory_mb"] = memory_mb
    if disk_arg:
        params["disk"] = disk_arg
    identity = deps.hypervisors.for_cluster(tpl.cluster).identity(tpl.guest.ref)
    target = Target(kind=TargetKind.TEMPLATE, label=tpl.label, company=company, cluster=tpl.cluster,
                    guest=tpl.guest, record=targets.guest_record(tpl, identity))
    held = _hold_address(deps, principal, net, tpl=tpl, name=name) if net else None
    if held is not None:
        params["net"] = held
    # the new VM is the caller's company's, whoever owns the (shared) template
    try:
        outcome = requests.submit(deps, principal, action="vm.create", target=target, params=params,
                                  conversation=conversation, request_id=request_id, company_id=company_id,
                                  summary=f"create {name} from {tpl.guest.name} on {tpl.cluster.name}",
                                  admit=admit)
    except BotError:
        if held is not None:  # refused (a quota): the address it held goes back
            ipam.release_ids(deps, company_id=company_id, ids=[int(held["assignment_id"])], why="request refused")
        raise
    if held is not None and not outcome.created:
        # a re-delivery: the first delivery's request holds its own address
        ipam.release_ids(deps, company_id=principal.company_id, ids=[int(held["assignment_id"])],
                         why="duplicate request")
    return outcome


def _hold_address(deps: Deps, principal: Principal, net: str, *, tpl: inventory.OwnedGuest, name: str
                  ) -> dict[str, Any]:
    assert principal.company_id is not None and tpl.cluster.id is not None
    rng = ipam.choose_range(deps, principal, company_id=principal.company_id, cluster_id=tpl.cluster.id, name=net,
                            address=None)
    bridge = None if rng.vnet else rng.bridge
    if bridge is not None and bridge not in deps.hypervisors.for_cluster(tpl.cluster).bridges(tpl.guest.node):
        raise InvalidArguments(f"bridge {bridge} of range {rng.name} does not exist on node {tpl.guest.node}")
    assignment = ipam.allocate(deps, principal, rng=rng, vmid=None, nic=0, label=f"new VM {name}")
    return ipam.job_params(rng, assignment)


def _bindings(deps: Deps, principal: Principal) -> list[tuple[int, str]]:
    with deps.uow_factory(principal.scope) as uow:
        return [(b.cluster_id, b.pool) for b in uow.pool_bindings.list() if b.company_id == principal.company_id]


def check_new_guest_quota(deps: Deps, principal: Principal, *, company: Company | None,
                          mine: list[inventory.OwnedGuest], like: inventory.OwnedGuest | None) -> dict[str, Any]:
    """Refuse a new guest (a restore as new VM) the company's quotas have no room for.

    Args:
        deps: ports.
        principal: who asks.
        company: whose quotas apply.
        mine: the company's guests now.
        like: the guest the new one copies (its size counts), or None when only the count is known.

    Returns:
        The reservation, for the job's params: the job checks it again when it runs.

    Raises:
        Conflict: a quota would be exceeded, counting the new guests already being made.
    """
    wanted: dict[str, Any] = {"vms": 1} if like is None else quotas.reservation(
        like, cores=None, memory_mb=None, disk_gb=0, grow_by=True)
    pending: list[Job] = []
    if company is not None and company.id is not None:
        with deps.uow_factory(principal.scope) as uow:
            pending = quotas.in_flight(uow, company.id)
    quotas.check(company.quotas if company else {}, mine=mine, pending=pending, wanted=wanted)
    return wanted
