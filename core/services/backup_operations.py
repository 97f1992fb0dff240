"""The operations on backups: back up now, restore (in place or as a new VM), delete, protect, unprotect.

Each is one catalog entry, run by the job runner like any other: steps are Proxmox calls not yet
made, previews are what an approver must see. Restore and delete wait for a second person by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.errors import Conflict, InvalidArguments
from core.model import GuestRef, TaskRef
from core.ports import Hypervisor
from core.rbac import Perm
from core.services.backup_targets import BACKUP, backup_of
from core.services.operations import Operation, Step, Target
from core.services.targets import GUEST
from core.services.vm_operations import create_precheck, disks_and_snapshots

MODES = ("snapshot", "suspend", "stop")


def _api(hv: Hypervisor | None) -> Hypervisor:
    assert hv is not None, "a backup operation runs on its cluster"
    return hv


# ---- backup now ------------------------------------------------------------------------


def _backup_now(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api = _api(hv)
    assert target.guest is not None
    guest = target.guest
    # vzdump backs up only the guests of the node asked: ask the guest's own node
    yield Step("backup", lambda: api.backup(guest.ref, storage=params["storage"], mode=params.get("mode", "snapshot"),
                                            notes=params.get("note"), protected=bool(params.get("protect"))),
               on=guest.ref)


def _backup_preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [("Storage", str(params["storage"])), ("Mode", str(params.get("mode", "snapshot")))]
    if params.get("protect"):
        facts.append(("Protected", "yes"))
    return facts


def _check_mode(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> None:
    if params.get("mode", "snapshot") not in MODES:
        raise InvalidArguments(f"--mode is one of {', '.join(MODES)}")


def _backed_up(target: Target, params: dict[str, Any]) -> str:
    return f"backed up {target.label} to {params['storage']}" + (" (protected)" if params.get("protect") else "")


# ---- restore ---------------------------------------------------------------------------


def _restore(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api = _api(hv)
    backup = backup_of(target)
    kind = backup.kind or "qemu"
    if params.get("as_new"):
        newid = api.next_vmid()
        params["new_vmid"] = newid  # the job keeps it, and the result names it
        node = str(target.record["node"])
        # a new VMID, new MAC addresses (unique), in the company's pool; the runner meets it after this call
        yield Step("restore", lambda: api.restore(node=node, kind=kind, vmid=newid, archive=backup.volid,
                                                  pool=params["pool"], unique=True, name=params["as_new"]))
        return
    guest = target.guest
    if guest is None:
        raise Conflict(f"{target.label}: its VM no longer exists; restore it with --as-new NAME")
    was_running = guest.status == "running"
    if was_running:
        # Proxmox refuses to restore over a running VM; the approver saw that it runs and will run again
        yield Step("stop", lambda: api.power(guest.ref, "stop"), on=guest.ref)
    ref = GuestRef(cluster=guest.cluster, node=guest.node, kind=guest.kind, vmid=guest.vmid)
    yield Step("restore", lambda: api.restore(node=guest.node, kind=guest.kind, vmid=guest.vmid,
                                              archive=backup.volid, force=True), on=ref)
    if was_running:
        yield Step("start", lambda: api.power(ref, "start"), on=ref)


def _restore_preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    backup = backup_of(target)
    facts = [("Backup", f"{backup.volid} ({target.record.get('backup_label')})")]
    if params.get("as_new"):
        return [*facts, ("Restores as", f"new VM {params['as_new']} in pool {params['pool']} (new VMID, new MACs)")]
    guest = target.guest
    if guest is None:
        return [*facts, ("Current state", "the VM no longer exists")]
    disks, snapshots = disks_and_snapshots(_api(hv), guest.ref)
    then = "stopped, restored, started again" if guest.status == "running" else "restored (stays stopped)"
    return [*facts, ("Current state", guest.status), ("Overwritten disks", ", ".join(disks) or "none"),
            ("Snapshots lost", ", ".join(snapshots) or "none"), ("The VM will be", then)]


def _check_restore(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> None:
    if not params.get("as_new") and target.guest is None:
        raise Conflict(f"{target.label}: its VM no longer exists; restore it with --as-new NAME")


def _restored(target: Target, params: dict[str, Any]) -> str:
    if params.get("as_new"):
        cluster = target.cluster.name if target.cluster else "?"
        return f"restored {target.record.get('backup_label')} as {params['as_new']} ({cluster}/{params['new_vmid']})"
    return f"restored {target.label}"


# ---- delete, protect -------------------------------------------------------------------


def _refuse_protected(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> None:
    if target.record.get("protected"):
        raise Conflict(f"{target.label} is protected; unprotect it first (backup unprotect)")


def _delete(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api = _api(hv)
    backup = backup_of(target)
    node = str(target.record["node"])
    yield Step("delete backup", lambda: api.delete_backup(node=node, storage=backup.storage, volid=backup.volid),
               check=lambda: _refuse_protected(hv, target, params))


def _protect(flag: bool) -> Any:
    def steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
        api = _api(hv)
        backup = backup_of(target)
        node = str(target.record["node"])

        def call() -> TaskRef:
            api.set_backup_protected(node=node, storage=backup.storage, volid=backup.volid, protected=flag)
            return TaskRef(cluster=api.cluster_name, node=node, upid=None)

        yield Step("protect" if flag else "unprotect", call)

    return steps


def _backup_facts(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    b = backup_of(target)
    return [("Backup", b.volid), ("Protected", "yes" if b.protected else "no")]


OPERATIONS: tuple[Operation, ...] = (
    Operation("backup.now", Perm.BACKUP_CREATE, "back up", "Back a VM up now (on its own node), with progress.",
              GUEST, _backup_now, preview=_backup_preview, check=_check_mode, result=_backed_up),
    Operation("backup.restore", Perm.BACKUP_RESTORE, "restore",
              "Restore a backup over its VM (stop, restore, start) or --as-new NAME.", BACKUP, _restore,
              preview=_restore_preview, check=_check_restore, result=_restored, approval=True,
              # as a new VM: the quota again when it runs, after an approval that may have taken hours
              precheck=create_precheck),
    Operation("backup.delete", Perm.BACKUP_DELETE, "delete", "Delete a backup (a protected one is refused).", BACKUP,
              _delete, preview=_backup_facts, check=_refuse_protected, approval=True),
    Operation("backup.protect", Perm.BACKUP_CREATE, "protect",
              "Protect a backup from deletion and pruning.", BACKUP, _protect(True), preview=_backup_facts),
    Operation("backup.unprotect", Perm.BACKUP_DELETE, "unprotect", "Let a backup be deleted and pruned again.",
              BACKUP, _protect(False), preview=_backup_facts),
)
