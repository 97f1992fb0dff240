"""The Proxmox operations a job can run, as data: permission, wording and steps.

A job names its operation (``vm.start``); the runner looks it up here, re-checks the
permission, and follows each step's Proxmox task to the end before the next one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidArguments
from core.model import Guest, GuestRef, TaskRef
from core.ports import ConfigChange, Hypervisor
from core.rbac import Perm


@dataclass(frozen=True)
class Step:
    label: str
    task: TaskRef


StepsFn = Callable[[Hypervisor, Guest, dict[str, Any]], Iterator[Step]]


@dataclass(frozen=True)
class Operation:
    name: str
    perm: Perm
    # what chat says while it runs: "start web-01"
    verb: str
    steps: StepsFn
    # the guest must exist when the job starts (not so for a clone's new id)
    needs_guest: bool = True


def _power(action: str) -> StepsFn:
    def steps(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
        if action == "reset" and guest.kind == "lxc":
            raise InvalidArguments("containers (lxc) have no reset; use vm reboot or vm stop")
        yield Step(action, hv.power(guest.ref, action))

    return steps


def _delete(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    # Proxmox refuses to destroy a running guest; the approver saw its state, so stop it first
    if guest.status != "stopped":
        yield Step("stop", hv.power(guest.ref, "stop"))
    yield Step("delete", hv.delete(guest.ref))


def _snapshot_create(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    yield Step("snapshot", hv.create_snapshot(guest.ref, params["name"], description=params.get("description", "")))


def _snapshot_rollback(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    yield Step("rollback", hv.rollback_snapshot(guest.ref, params["name"]))


def _snapshot_delete(hv: Hypervisor, guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    yield Step("delete snapshot", hv.delete_snapshot(guest.ref, params["name"]))


def _create(hv: Hypervisor, template_guest: Guest, params: dict[str, Any]) -> Iterator[Step]:
    template = template_guest.ref
    newid = hv.next_vmid()
    params["vmid"] = newid  # the runner records it in the job's result
    yield Step("clone", hv.clone(template, newid=newid, name=params["name"], pool=params["pool"], full=True))
    new = GuestRef(cluster=template.cluster, node=template.node, kind=template.kind, vmid=newid)
    change = ConfigChange(cores=params.get("cores"), memory_mb=params.get("memory_mb"))
    if not change.empty:
        yield Step("configure", hv.configure(new, change))
    if params.get("disk"):
        yield Step("resize disk", hv.resize_disk(new, disk=params.get("disk_name", "scsi0"), size=params["disk"]))


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
        Operation("snapshot.rollback", Perm.SNAPSHOT_DESTROY, "roll back", _snapshot_rollback),
        Operation("snapshot.delete", Perm.SNAPSHOT_DESTROY, "delete snapshot of", _snapshot_delete),
    )
}


def get(name: str) -> Operation:
    return OPERATIONS[name]
