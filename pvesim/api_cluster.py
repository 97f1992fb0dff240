"""Cluster-wide and node endpoints: resources, next id, version, restore, tasks (backups: :mod:`pvesim.api_backup`)."""

from __future__ import annotations

import copy
from typing import Any

from pvesim.context import Call, Listing, SimContext, check_config_lock, route
from pvesim.propstring import format_property_string, parse_property_string
from pvesim.state import ApiError, SimGuest, new_mac
from pvesim.tasks import SimTask, TaskFailed, percent_lines


@route("GET", "/version")
async def version(ctx: SimContext, call: Call) -> Any:
    return {"version": "8.4.1", "release": "8.4", "repoid": "2a5fa54a8503f96d"}


@route("GET", "/cluster/resources")
async def resources(ctx: SimContext, call: Call) -> Any:
    wanted = call.params.get("type")
    # PVE lists only what the caller may see: guests need VM.Audit
    can_audit = call.privileges is None or "VM.Audit" in call.privileges
    with ctx.state.lock:
        rows: list[dict[str, Any]] = []
        if wanted in (None, "vm") and can_audit:
            for guest in ctx.state.guests.values():
                node = ctx.state.nodes.get(guest.node)
                rows.append(guest.resource_row(node_online=bool(node and node.online)))
        if wanted in (None, "node"):
            for node in ctx.state.nodes.values():
                rows.append({"id": f"node/{node.name}", "type": "node", "node": node.name,
                             "status": "online" if node.online else "offline"})
        if wanted in (None, "storage"):
            for storage in ctx.state.storages.values():
                for node in ctx.state.nodes.values():
                    if storage.on(node.name):
                        rows.append({"id": f"storage/{node.name}/{storage.name}", "type": "storage",
                                     "storage": storage.name, "node": node.name,
                                     "content": ",".join(sorted(storage.content)), "shared": int(storage.shared),
                                     "status": "available" if node.online else "unknown"})
        return rows


@route("GET", "/cluster/nextid")
async def nextid(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        if "vmid" in call.params:
            vmid = int(call.params["vmid"])
            if vmid in ctx.state.guests:
                raise ApiError(400, "Parameter verification failed.", errors={"vmid": f"VM {vmid} already exists"})
            return str(vmid)
        # PVE's JSON encoder sends this number as a string
        return str(ctx.state.next_vmid())


@route("POST", "/nodes/{node}/qemu")
@route("POST", "/nodes/{node}/lxc")
async def create_or_restore(ctx: SimContext, call: Call) -> Any:
    p = call.params
    kind = call.kind
    archive = p.get("archive") if kind == "qemu" else (p.get("ostemplate") if call.flag("restore") else None)
    if archive is None:
        raise ApiError(500, "the simulator only restores backups (archive= / restore=1)")
    vmid = int(p["vmid"])
    label = "VM" if kind == "qemu" else "CT"
    with ctx.state.lock:
        ctx.state.node(call.node)
        backup = ctx.state.backups.get(archive)
        if backup is None or backup.kind != kind:
            raise ApiError(500, f"volume '{archive}' does not exist")
        ctx.state.storage(backup.storage, node=call.node)
        existing = ctx.state.guests.get(vmid)
        if existing is not None:
            if not call.flag("force") or existing.node != call.node:
                raise ApiError(500, f"unable to restore {label} {vmid} - {label} {vmid} already exists on node "
                                    f"'{existing.node}'")
            if existing.status == "running" and kind == "lxc":
                raise ApiError(500, "can't overwrite running container")
            check_config_lock(existing)
        config = copy.deepcopy(backup.config)
        target_storage = p.get("storage")
        disk_key = "scsi0" if kind == "qemu" else "rootfs"
        if target_storage and disk_key in config:
            volume_key = "file" if kind == "qemu" else "volume"
            disk = parse_property_string(config[disk_key], default_key=volume_key)
            disk[volume_key] = f"{target_storage}:vm-{vmid}-disk-0"
            config[disk_key] = format_property_string(disk, default_key=volume_key)
        # qmrestore takes a few settings as overrides of the backed-up config (the restore dialog's name)
        name_key = "name" if kind == "qemu" else "hostname"
        if p.get(name_key):
            config[name_key] = p[name_key]
        if call.flag("unique"):
            for key, value in list(config.items()):
                if key.startswith("net"):
                    config[key] = _new_mac(value, kind=kind)
        pool = p.get("pool") or (existing.pool if existing else None)
        guest = existing or SimGuest(vmid=vmid, kind=kind, node=call.node, pool=pool, status="stopped",
                                     config={}, qmpstatus="stopped" if kind == "qemu" else None)
        if existing is None or existing.status != "running":
            guest.config, guest.lock = config, "create"
        ctx.state.guests[vmid] = guest

    running = existing is not None and existing.status == "running"

    async def work(task: SimTask) -> None:
        if running:  # qemu-server checks inside the task, so the call itself answers with a UPID
            raise TaskFailed(f"unable to restore VM {vmid} - vm is running")
        if kind == "qemu":
            lines = [f"restore vma archive: zstd -q -d -c {archive}|vma extract -v -r /var/tmp/vzdumptmp.fifo -"]
            lines += percent_lines("progress {pct:.0f}% (read {done} bytes, duration 1 sec)", total=guest.disk_bytes)
        else:
            lines = [f"recovering backed-up configuration from '{archive}'", f"extracting archive '{archive}'"]
        try:
            await ctx.tasks.progress(task, lines)
        except BaseException:
            with ctx.state.lock:
                if existing is None:
                    ctx.state.guests.pop(vmid, None)
            raise
        with ctx.state.lock:
            guest.lock = None

    with ctx.state.lock:
        return ctx.tasks.start(node=call.node, type_="qmrestore" if kind == "qemu" else "vzrestore", id_=str(vmid),
                               user=call.user, work=work, guest=guest)


@route("GET", "/nodes/{node}/tasks/{upid}/status")
async def task_status(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        ctx.state.node(call.node)
        return ctx.tasks.find(call.path_params["upid"], node=call.node).status()


@route("GET", "/nodes/{node}/tasks/{upid}/log")
async def task_log(ctx: SimContext, call: Call) -> Any:
    start = int(call.params.get("start", "0"))
    limit = int(call.params.get("limit", "50"))
    with ctx.state.lock:
        ctx.state.node(call.node)
        task = ctx.tasks.find(call.path_params["upid"], node=call.node)
        lines = task.log[start : start + limit] if limit else task.log[start:]
        return Listing([{"n": start + i + 1, "t": text} for i, text in enumerate(lines)], total=len(task.log))


@route("DELETE", "/nodes/{node}/tasks/{upid}")
async def stop_task(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        ctx.state.node(call.node)
        task = ctx.tasks.find(call.path_params["upid"], node=call.node)
        ctx.tasks.cancel(task)
    return None


# The privileges PVE 8.4 knows (pve-access-control's PVE::AccessControl role definitions); a token
# granted everything has all of them.
ALL_PRIVILEGES: tuple[str, ...] = (
    "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
    "Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify", "Pool.Allocate",
    "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser", "SDN.Allocate", "SDN.Audit", "SDN.Use",
    "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming", "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog",
    "User.Modify", "VM.Allocate", "VM.Audit", "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU",
    "VM.Config.Cloudinit", "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network",
    "VM.Config.Options", "VM.Console", "VM.Migrate", "VM.Monitor", "VM.PowerMgmt", "VM.Snapshot",
    "VM.Snapshot.Rollback",
)


@route("GET", "/access/permissions")
async def permissions(ctx: SimContext, call: Call) -> Any:
    """``{path: {privilege: propagate}}`` like PVE. The simulator grants a token's privileges on every
    path, which PVE would show as one propagating ACL on ``/``; asked for one path, it answers for that one."""
    userid = call.params.get("userid")
    if userid and userid != call.user and call.privileges is not None and "Sys.Audit" not in call.privileges:
        raise ApiError(403, "Permission check failed (/access, Sys.Audit)")
    privileges = ALL_PRIVILEGES if call.privileges is None else sorted(call.privileges)
    return {call.params.get("path") or "/": {name: 1 for name in privileges}}


def _new_mac(net: str, *, kind: str) -> str:
    key = "hwaddr" if kind == "lxc" else None
    parts = net.split(",")
    for i, part in enumerate(parts):
        name, _, value = part.partition("=")
        if (key and name == key) or (key is None and i == 0 and ":" in value):
            parts[i] = f"{name}={new_mac()}"
    return ",".join(parts)
