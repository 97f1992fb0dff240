"""Cluster-wide and node endpoints: resources, next id, version, vzdump, backup listing, restore, tasks."""

from __future__ import annotations

import copy
import time
from typing import Any

from pvesim.context import Call, Listing, SimContext, check_config_lock, render_bytes, route
from pvesim.propstring import format_property_string, parse_property_string
from pvesim.state import ApiError, SimBackup, SimGuest
from pvesim.tasks import SimTask, percent_lines


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
                                     "content": ",".join(sorted(storage.content)),
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


@route("POST", "/nodes/{node}/vzdump")
async def vzdump(ctx: SimContext, call: Call) -> Any:
    p = call.params
    node = call.node
    storage_name = p.get("storage", "local")
    mode = p.get("mode", "snapshot")
    with ctx.state.lock:
        ctx.state.node(node)
        storage = ctx.state.storage(storage_name, node=node)
        if "backup" not in storage.content:
            raise ApiError(500, f"storage '{storage_name}' does not support backups")
        vmids = [int(v) for v in p.get("vmid", "").replace(";", ",").split(",") if v]
        local = [ctx.state.guests[v] for v in vmids if v in ctx.state.guests and ctx.state.guests[v].node == node]
        if not local:
            # nothing of this to back up here: PVE answers without starting a task
            return "OK"
        guest = local[0]

    async def work(task: SimTask) -> None:
        ext = "vma.zst" if guest.kind == "qemu" else "tar.zst"
        stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.localtime(task.starttime))
        archive = f"/var/lib/vz/dump/vzdump-{guest.kind}-{guest.vmid}-{stamp}.{ext}"
        head = [
            f"INFO: starting new backup job: vzdump {guest.vmid} --storage {storage_name} --mode {mode} "
            f"--node {node} --compress zstd --remove 0",
            f"INFO: Starting Backup of VM {guest.vmid} ({guest.kind})",
            f"INFO: Backup started at {time.strftime('%Y-%m-%d %H:%M:%S')}",
            f"INFO: status = {guest.status}",
            f"INFO: backup mode: {mode}",
            f"INFO: creating vzdump archive '{archive}'",
        ]
        total = guest.disk_bytes
        if guest.kind == "qemu":
            body = [
                f"INFO: {pct:3d}% ({render_bytes(total * pct // 100)} of {render_bytes(total)}) in {i}s, "
                f"read: 341.3 MiB/s, write: 280.0 MiB/s"
                for i, pct in enumerate(range(0, 101, 10))
            ]
        else:
            body = ["INFO: including mount point rootfs ('/') in backup", f"INFO: Total bytes written: {total // 4}"]
        size = max(total // 20, 1024)
        tail = [
            f"INFO: archive file size: {render_bytes(size)}",
            f"INFO: Finished Backup of VM {guest.vmid} (00:00:0{len(body) % 10})",
            "INFO: Backup job finished successfully",
        ]
        await ctx.tasks.progress(task, head + body + tail)
        with ctx.state.lock:
            ctime = task.starttime
            volid = f"{storage_name}:backup/vzdump-{guest.kind}-{guest.vmid}-{stamp}.{ext}"
            while volid in ctx.state.backups:  # two backups within a second: keep both
                ctime += 1
                stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.localtime(ctime))
                volid = f"{storage_name}:backup/vzdump-{guest.kind}-{guest.vmid}-{stamp}.{ext}"
            ctx.state.backups[volid] = SimBackup(
                volid=volid, storage=storage_name, node=node, vmid=guest.vmid, kind=guest.kind, ctime=ctime,
                size=size, notes=guest.name, config=copy.deepcopy(guest.config), name=guest.name,
            )

    with ctx.state.lock:
        return ctx.tasks.start(node=node, type_="vzdump", id_=str(guest.vmid), user=call.user, work=work,
                               guest=guest, config_lock="backup")


@route("GET", "/nodes/{node}/storage/{storage}/content")
async def storage_content(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        ctx.state.node(call.node)
        storage = ctx.state.storage(call.path_params["storage"], node=call.node)
        if call.params.get("content", "backup") != "backup":
            return []
        vmid = int(call.params["vmid"]) if "vmid" in call.params else None
        rows = []
        for b in ctx.state.backups.values():
            if b.storage != storage.name or (not storage.shared and b.node != call.node):
                continue
            if vmid is not None and b.vmid != vmid:
                continue
            rows.append({"volid": b.volid, "content": "backup", "format": b.volid.split(".", 1)[1],
                         "size": b.size, "ctime": b.ctime, "vmid": b.vmid, "subtype": b.kind, "notes": b.notes})
        return rows


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
            if existing.status == "running":
                raise ApiError(500, f"unable to restore {label} {vmid} - {label} is running")
            check_config_lock(existing)
        config = copy.deepcopy(backup.config)
        target_storage = p.get("storage")
        disk_key = "scsi0" if kind == "qemu" else "rootfs"
        if target_storage and disk_key in config:
            volume_key = "file" if kind == "qemu" else "volume"
            disk = parse_property_string(config[disk_key], default_key=volume_key)
            disk[volume_key] = f"{target_storage}:vm-{vmid}-disk-0"
            config[disk_key] = format_property_string(disk, default_key=volume_key)
        pool = p.get("pool") or (existing.pool if existing else None)
        guest = existing or SimGuest(vmid=vmid, kind=kind, node=call.node, pool=pool, status="stopped",
                                     config={}, qmpstatus="stopped" if kind == "qemu" else None)
        guest.config, guest.lock = config, "create"
        ctx.state.guests[vmid] = guest

    async def work(task: SimTask) -> None:
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
