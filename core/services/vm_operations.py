"""The operations on one guest: power, create, delete and snapshots, each one catalog entry."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from core.errors import Conflict, InvalidArguments, NotFound
from core.model import Guest, GuestRef, Job
from core.ports import ConfigChange, Hypervisor
from core.principal import Principal
from core.rbac import Perm
from core.services import backups, inventory, ipam, net_operations, quotas
from core.services.deps import Deps
from core.services.operations import CheckFn, Ended, Operation, Step, StepsFn, Target
from core.services.targets import GUEST, TEMPLATE


def _on(hv: Hypervisor | None, target: Target) -> tuple[Hypervisor, Guest]:
    assert hv is not None and target.guest is not None, "a guest operation runs on the guest's cluster"
    return hv, target.guest


# the state in which a power action has nothing to do, and what to say instead of queueing it (or asking an
# approver to allow it): Proxmox would fail its task ("VM 101 already running", "VM 105 not running")
_NOTHING_TO_DO = {
    "start": ("running", "is already running"),
    "shutdown": ("stopped", "is already stopped"),
    "stop": ("stopped", "is already stopped"),
    "reboot": ("stopped", "is stopped; start it with vm start"),
    "reset": ("stopped", "is stopped; start it with vm start"),
    "suspend": ("stopped", "is stopped; there is nothing to suspend"),
    "resume": ("stopped", "is stopped; start it with vm start"),
}


def _power_check(action: str) -> CheckFn:
    idle_state, said = _NOTHING_TO_DO[action]

    def check(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> None:
        guest = target.guest
        # the cached inventory says there is work to do: nothing more is asked (the common case costs nothing)
        if guest is None or hv is None or guest.status != idle_state:
            return
        # it may be seconds old: Proxmox's own answer decides before anyone is refused
        live = hv.status(guest.ref)
        if live.guest.status != idle_state:
            return
        if action == "start" and live.qmp_status == "paused":
            raise Conflict(f"{target.label} is paused; resume it with vm resume")
        raise Conflict(f"{target.label} {said}")

    return check


_refuse_idle_reset = _power_check("reset")


def _reset_check(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> None:
    if target.guest is not None and target.guest.kind == "lxc":
        raise InvalidArguments("containers (lxc) have no reset; use vm reboot or vm stop")
    _refuse_idle_reset(hv, target, params)


def _power(action: str) -> StepsFn:
    def steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
        api, guest = _on(hv, target)
        yield Step(action, lambda: api.power(guest.ref, action), on=guest.ref)

    return steps


def _state(target: Target) -> list[tuple[str, str]]:
    return [("Current state", target.guest.status)] if target.guest is not None else []


def _state_preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    return _state(target)


def _delete(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api, guest = _on(hv, target)
    # Proxmox refuses to destroy a running guest; the approver saw its state, so stop it first
    if guest.status != "stopped":
        yield Step("stop", lambda: api.power(guest.ref, "stop"), on=guest.ref)
    yield Step("delete", lambda: api.delete(guest.ref), on=guest.ref)


def _delete_preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    """What a delete destroys (disks, snapshots) and what outlives it (backups)."""
    api, g = _on(hv, target)
    disks, snapshots = disks_and_snapshots(api, g.ref)
    # only this VM's backups: those of an earlier guest on the same VMID (older than this one) are another's
    born = int((target.record.get("identity") or {}).get("created") or 0)
    backups = sorted(b.volid for storage in api.backup_storages(g.node)
                     for b in api.backups(node=g.node, storage=storage, vmid=g.vmid) if b.ctime >= born)
    kept = ", ".join(backups[:10]) + (" …" if len(backups) > 10 else "")
    return [("Disks deleted", ", ".join(disks) or "none"), ("Snapshots deleted", ", ".join(snapshots) or "none"),
            ("Backups kept", kept or "none"), *_state(target)]


_SIZE = re.compile(r"\((\d+(?:\.\d+)?)([KMGT])\)$")
_GIB = {"K": 1 / 1024 ** 2, "M": 1 / 1024, "G": 1.0, "T": 1024.0}


def _delete_at_stake(facts: list[tuple[str, str]]) -> str | None:
    """"2 disks, 164 GiB, and snapshot pre-upgrade · VM is running", from :func:`_delete_preview`'s facts."""
    shown = dict(facts)
    disks = [d for d in shown.get("Disks deleted", "none").split(", ") if d and d != "none"]
    snapshots = [n for n in shown.get("Snapshots deleted", "none").split(", ") if n and n != "none"]
    sizes = [_SIZE.search(d) for d in disks]
    total = sum(float(m.group(1)) * _GIB[m.group(2)] for m in sizes if m)
    parts = [f"{len(disks)} disk{'s' if len(disks) != 1 else ''}" + (f", {total:.0f} GiB" if total >= 1 else "")]
    if snapshots:
        parts.append(f"snapshot{'s' if len(snapshots) != 1 else ''} {', '.join(snapshots[:3])}"
                     + (" …" if len(snapshots) > 3 else ""))
    line = "Destroys " + ", and ".join(parts)
    state = shown.get("Current state")
    return f"{line} · VM is {state}" if state else line


def disks_and_snapshots(api: Hypervisor, ref: GuestRef) -> tuple[list[str], list[str]]:
    """A guest's disks ("scsi0: local-lvm:vm-100-disk-0 (32G)") and snapshot names, as cards show them."""
    status = api.status(ref)
    disks = sorted(f"{key}: {value.split(',')[0]} ({_size(value)})" for key, value in status.config.items()
                   if _is_disk(key, value))
    return disks, [s.name for s in api.snapshots(ref)]


def _is_disk(key: str, value: str) -> bool:
    prefixes = ("scsi", "virtio", "sata", "ide", "efidisk", "tpmstate", "rootfs", "mp")
    return key.startswith(prefixes) and "media=cdrom" not in value and ":" in value


def _size(value: str) -> str:
    for part in value.split(","):
        if part.startswith("size="):
            return part[5:]
    return "size unknown"


def _create(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api, template_guest = _on(hv, target)
    template = template_guest.ref
    newid = api.next_vmid()
    params["vmid"] = newid  # the job keeps it, and the result names it
    yield Step("clone", lambda: api.clone(template, newid=newid, name=params["name"], pool=params["pool"], full=True),
               on=template)
    # the runner meets the new guest first here and takes its identity from this first sight
    new = GuestRef(cluster=template.cluster, node=template.node, kind=template.kind, vmid=newid)
    change = ConfigChange(cores=params.get("cores"), memory_mb=params.get("memory_mb"))
    if not change.empty:
        yield Step("configure", lambda: api.configure(new, change), on=new)
    if params.get("disk"):
        yield Step("resize disk", lambda: api.resize_disk(new, disk=params.get("disk_name", "scsi0"),
                                                          size=params["disk"]), on=new)
    if params.get("net"):
        # the address was taken for it when the request was made; the clone is stopped, so no reboot
        created = Guest(cluster=new.cluster, vmid=newid, name=params["name"], kind=new.kind, node=new.node,
                        status="stopped")
        yield from net_operations.configure_steps(api, created, ipam.from_params(params["net"]))


def _create_ended(deps: Deps, ended: Ended) -> None:
    """The address held for a new VM becomes the VM's once it exists; it is given back if the VM never came."""
    net = ended.params.get("net")
    if not net:
        return
    if ended.succeeded and ended.params.get("vmid"):
        ipam.bind(deps, company_id=ended.company_id, assignment_id=int(net["assignment_id"]),
                  vmid=int(ended.params["vmid"]))
    else:
        ipam.release_ids(deps, company_id=ended.company_id, ids=[int(net["assignment_id"])],
                         why="the VM was not created")


def _delete_ended(deps: Deps, ended: Ended) -> None:
    """A deleted VM's addresses go back to their ranges; only once the delete succeeded, never before."""
    if ended.succeeded and ended.target.get("cluster_id") is not None:
        ipam.release_guest(deps, company_id=ended.company_id, cluster_id=int(ended.target["cluster_id"]),
                           vmid=int(ended.target["vmid"]), why="the VM was deleted")


def create_precheck(deps: Deps, principal: Principal, target: Target, job: Job) -> None:
    """The quota again, now that the job runs: against the guests as they are and the new ones queued before it.

    For every job that makes a new guest and carries its reservation (``vm.create``, a restore as new VM).
    """
    if "reserve" not in job.params:
        return
    view = inventory.view(deps, principal, refresh=True)
    mine = [o for o in view.guests if o.company_id == job.company_id]
    with deps.uow_factory(principal.scope) as uow:
        company = uow.companies.get(job.company_id)
        earlier = quotas.in_flight(uow, job.company_id, before=job)
    quotas.check(company.quotas if company else {}, mine=mine, pending=earlier, wanted=job.params["reserve"])


def _uncreate(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    """A clone whose configuration failed is removed rather than left counting against the quota."""
    api, template_guest = _on(hv, target)
    if "vmid" not in params:
        return
    new = GuestRef(cluster=template_guest.cluster, node=template_guest.node, kind=template_guest.kind,
                   vmid=int(params["vmid"]))
    yield Step(f"remove the half-made {params['name']}", lambda: api.delete(new), on=new)


def _left_behind(target: Target, params: dict[str, Any]) -> str:
    cluster = target.cluster.name if target.cluster else "?"
    return f"{params['name']} ({cluster}/{params.get('vmid')}) is left behind; delete it with vm delete"


def _created(target: Target, params: dict[str, Any]) -> str:
    cluster = target.cluster.name if target.cluster else "?"
    done = f"created {params['name']} as {cluster}/{params.get('vmid')}"
    return done + (f" with {params['net']['cidr']} on net{params['net']['nic']}" if params.get("net") else "")


def _snapshot_create(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api, guest = _on(hv, target)
    yield Step("snapshot", lambda: api.create_snapshot(guest.ref, params["name"],
                                                       description=params.get("description", "")), on=guest.ref)


def _record_snapshot(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> dict[str, Any]:
    """The snapshot's time of taking: a snapshot deleted and taken again under its name is another one."""
    api, guest = _on(hv, target)
    name = params["name"]
    found = next((s for s in api.snapshots(guest.ref) if s.name == name), None)
    if found is None:
        raise NotFound(f"snapshot '{str(name)[:40]}' not found on {target.label}")
    return {"snaptime": found.snaptime}


def _check_same_snapshot(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> None:
    """Refuse when the snapshot the request names was deleted and taken again under its name since."""
    now = _record_snapshot(hv, target, params)
    if "snaptime" not in params or now["snaptime"] != params["snaptime"]:
        raise Conflict(f"snapshot '{params['name']}' of {target.label} is not the one this request was made "
                       "for: it was deleted and taken again under the same name")


def _same_snapshot(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Callable[[], None]:
    return lambda: _check_same_snapshot(hv, target, params)


def _snapshot_preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    return [("Snapshot", str(params["name"])), *_state(target)]


def _rollback_preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    api, guest = _on(hv, target)
    names = [s.name for s in api.snapshots(guest.ref)]
    name = params["name"]
    if name not in names:
        raise NotFound(f"snapshot '{str(name)[:40]}' not found on {target.label}")
    newer = names[names.index(name) + 1 :]
    return [("Snapshot", name), ("Returns to", name), ("Newer snapshots", ", ".join(newer) or "none"),
            *_state(target)]


def _snapshot_rollback(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api, guest = _on(hv, target)
    yield Step("rollback", lambda: api.rollback_snapshot(guest.ref, params["name"]), on=guest.ref,
               check=_same_snapshot(hv, target, params))


def _snapshot_delete(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api, guest = _on(hv, target)
    yield Step("delete snapshot", lambda: api.delete_snapshot(guest.ref, params["name"]), on=guest.ref,
               check=_same_snapshot(hv, target, params))


def _name(target: Target) -> str:
    return target.guest.name if target.guest is not None else target.label


# what is true once a power action's task succeeded, in the words a user would use
_NOW = {"start": "is running", "shutdown": "is shut down", "reboot": "rebooted and is running",
        "suspend": "is suspended", "resume": "is running again", "stop": "is stopped",
        "reset": "was reset and is running"}


def _power_op(name: str, perm: Perm, verb: str, summary: str, *, approval: bool = False,
              check: CheckFn | None = None) -> Operation:
    return Operation(f"vm.{name}", perm, verb, summary, GUEST, _power(name), preview=_state_preview,
                     approval=approval, check=check or _power_check(name),
                     result=lambda target, _params: f"{_name(target)} {_NOW[name]}")


OPERATIONS: tuple[Operation, ...] = (
    _power_op("start", Perm.VM_OPERATE, "start", "Start a VM."),
    _power_op("shutdown", Perm.VM_OPERATE, "shut down", "Shut a VM down cleanly (ACPI / container init)."),
    _power_op("reboot", Perm.VM_OPERATE, "reboot", "Reboot a VM cleanly."),
    _power_op("suspend", Perm.VM_OPERATE, "suspend", "Suspend (pause) a VM."),
    _power_op("resume", Perm.VM_OPERATE, "resume", "Resume a suspended VM."),
    _power_op("stop", Perm.VM_DESTROY, "stop (hard)", "Stop a VM hard, like pulling the plug.", approval=True),
    _power_op("reset", Perm.VM_DESTROY, "reset", "Reset a VM hard (not for containers).", approval=True,
              check=_reset_check),
    Operation("vm.delete", Perm.VM_DESTROY, "delete", "Delete a VM and its disks.", GUEST, _delete,
              preview=_delete_preview, always_approval=True,
              result=lambda target, _params: f"{_name(target)} deleted with its disks", ended=_delete_ended,
              prepare=backups.keep_owners,
              at_stake=_delete_at_stake),
    Operation("vm.create", Perm.VM_CREATE, "create",
              "Create a VM by cloning a template into your company's pool (quota-checked).", TEMPLATE, _create,
              result=_created, precheck=create_precheck, compensate=_uncreate, leftover=_left_behind,
              ended=_create_ended),
    Operation("snapshot.create", Perm.SNAPSHOT_CREATE, "snapshot", "Take a snapshot (default name: "
              "pvebot-<date>-<time>).", GUEST, _snapshot_create, preview=_snapshot_preview,
              result=lambda target, params: f"snapshot {params['name']} of {_name(target)} taken"),
    Operation("snapshot.rollback", Perm.SNAPSHOT_DESTROY, "roll back", "Roll a VM back to a snapshot.", GUEST,
              _snapshot_rollback, preview=_rollback_preview, record=_record_snapshot,
              result=lambda target, params: f"{_name(target)} rolled back to {params['name']}",
              still_same=_check_same_snapshot, approval=True),
    Operation("snapshot.delete", Perm.SNAPSHOT_DESTROY, "delete snapshot of", "Delete a snapshot.", GUEST,
              _snapshot_delete, preview=_snapshot_preview, record=_record_snapshot,
              result=lambda target, params: f"snapshot {params['name']} of {_name(target)} deleted",
              still_same=_check_same_snapshot, approval=True),
)
