"""The Proxmox operations a job can run, as data: permission, wording and steps.

A job names its operation (``vm.start``); the runner looks it up here, re-checks the
permission, and follows each step's Proxmox task to the end before the next one. A step is a
call not yet made: the runner first confirms that the guest it acts on is still the one the
request was made for (:class:`core.model.GuestIdentity`), then makes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.errors import Conflict, InvalidArguments, NotFound
from core.model import Guest, GuestRef, TaskRef
from core.ports import ConfigChange, Hypervisor
from core.rbac import Perm


@dataclass(frozen=True)
class Step:
    """One state-changing Proxmox call, made by the runner once ``on`` is confirmed to be the right guest."""

    label: str
    call: Callable[[], TaskRef]
    # the guest the call changes
    on: GuestRef
    # a further precondition, checked right before the call (a snapshot is still the one approved)
    check: Callable[[], None] | None = None


StepsFn = Callable[[Hypervisor, Guest, dict[str, Any]], Iterator[Step]]
# facts about the target taken when the request is made, kept in its params and checked again by the steps
RecordFn = Callable[[Hypervisor, Guest, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    name: str
    perm: Perm
    # what chat says while it runs: "start web-01"
    verb: str
    steps: StepsFn
    record: RecordFn | None = None


def _power(action: str) -> StepsFn:
    def steps(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
        if action == "reset" and guest.kind == "lxc":
            raise InvalidArguments("containers (lxc) have no reset; use vm reboot or vm stop")
        yield Step(action, lambda: hv.power(guest.ref, action), on=guest.ref)

    return steps


def _delete(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    # Proxmox refuses to destroy a running guest; the approver saw its state, so stop it first
    if guest.status != "stopped":
        yield Step("stop", lambda: hv.power(guest.ref, "stop"), on=guest.ref)
    yield Step("delete", lambda: hv.delete(guest.ref), on=guest.ref)


def _snapshot_create(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    yield Step("snapshot", lambda: hv.create_snapshot(guest.ref, params["name"],
                                                      description=params.get("description", "")), on=guest.ref)


def _record_snapshot(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> dict[str, Any]:
    """The snapshot's time of taking: a snapshot deleted and taken again under its name is another one."""
    name = params["name"]
    found = next((s for s in hv.snapshots(guest.ref) if s.name == name), None)
    if found is None:
        raise NotFound(f"snapshot '{str(name)[:40]}' not found on {guest.name} ({guest.cluster}/{guest.vmid})")
    return {"snaptime": found.snaptime}


def _same_snapshot(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Callable[[], None]:
    def check() -> None:
        now = _record_snapshot(hv, guest, params)
        if "snaptime" not in params or now["snaptime"] != params["snaptime"]:
            raise Conflict(
                f"snapshot '{params['name']}' of {guest.name} ({guest.cluster}/{guest.vmid}) is not the one this "
                "request was made for: it was deleted and taken again under the same name. Nothing was done."
            )

    return check


def _snapshot_rollback(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    yield Step("rollback", lambda: hv.rollback_snapshot(guest.ref, params["name"]), on=guest.ref,
               check=_same_snapshot(hv, guest, params))


def _snapshot_delete(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    yield Step("delete snapshot", lambda: hv.delete_snapshot(guest.ref, params["name"]), on=guest.ref,
               check=_same_snapshot(hv, guest, params))


def _create(hv: Hypervisor, template_guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    template = template_guest.ref
    newid = hv.next_vmid()
    params["vmid"] = newid  # the runner records it in the job's result
    yield Step("clone", lambda: hv.clone(template, newid=newid, name=params["name"], pool=params["pool"], full=True),
               on=template)
    # the runner meets the new guest first here and takes its identity from this first sight
    new = GuestRef(cluster=template.cluster, node=template.node, kind=template.kind, vmid=newid)
    change = ConfigChange(cores=params.get("cores"), memory_mb=params.get("memory_mb"))
    if not change.empty:
        yield Step("configure", lambda: hv.configure(new, change), on=new)
    if params.get("disk"):
        yield Step("resize disk", lambda: hv.resize_disk(new, disk=params.get("disk_name", "scsi0"),
                                                         size=params["disk"]), on=new)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("vm.start", Perm.VM_OPERATE, "start", _power("start")),
        Operation("vm.shutdown", Perm.VM_OPERATE, "shut down", _power("shutdown")),
        Operation("vm.reboot", Perm.VM_OPERATE, "reboot", _power("reboot")),
        Operation("vm.suspend", Perm.VM_OPERATE, "suspend", _power("suspend")),
        Operation("vm.resume", Perm.VM_OPERATE, "resume", _power("resume")),
        Operation("vm.stop", Perm.VM_DESTROY, "stop (hard)", _power("stop")),
        Operation("vm.reset", Perm.VM_DESTROY, "reset", _power("reset")),
        Operation("vm.delete", Perm.VM_DESTROY, "delete", _delete),
        Operation("vm.create", Perm.VM_CREATE, "create", _create),
        Operation("snapshot.create", Perm.SNAPSHOT_CREATE, "snapshot", _snapshot_create),
        Operation("snapshot.rollback", Perm.SNAPSHOT_DESTROY, "roll back", _snapshot_rollback,
                  record=_record_snapshot),
        Operation("snapshot.delete", Perm.SNAPSHOT_DESTROY, "delete snapshot of", _snapshot_delete,
                  record=_record_snapshot),
    )
}


def get(name: str) -> Operation:
    return OPERATIONS[name]
