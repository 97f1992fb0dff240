"""Guest endpoints: status, config, power, clone, resize, destroy and snapshots (qemu and lxc).

Checks Proxmox makes in the API handler answer at once (HTTP 500 with its message); checks it
makes inside the worker end the task with an error, exactly where qemu-server/pve-container do.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from pvesim import api_network
from pvesim.context import Call, SimContext, check_config_lock, render_bytes, route
from pvesim.propstring import format_property_string
from pvesim.state import (
    ApiError,
    SimGuest,
    SimSnapshot,
    bytes_to_size,
    new_identity,
    renew_macs,
    size_to_bytes,
)
from pvesim.tasks import SimTask, TaskFailed, percent_lines

# Options a running VM only takes at its next start (qemu-server keeps them pending).
COLD_OPTIONS = frozenset({"cores", "memory", "sockets", "cpu", "machine"})
NOT_CONFIG = frozenset({"node", "vmid", "digest", "delete", "revert", "skiplock", "background_delay", "force"})
TASK_PREFIX = {"qemu": "qm", "lxc": "vz"}


@route("GET", "/nodes/{node}/{kind}/{vmid}/status/current")
async def status_current(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        return ctx.guest(call).current_status()


@route("GET", "/nodes/{node}/{kind}/{vmid}/config")
async def get_config(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
        if "snapshot" in call.params:
            snap = guest.snapshots.get(call.params["snapshot"])
            if snap is None:
                raise ApiError(500, f"snapshot '{call.params['snapshot']}' does not exist")
            return {**snap.config, "digest": guest.digest()}
        config: dict[str, Any] = dict(guest.config)
        if not call.flag("current"):
            config.update(guest.pending)
        if guest.parent:
            config["parent"] = guest.parent
        if guest.lock:
            config["lock"] = guest.lock
        config["digest"] = guest.digest()
        return {k: int(v) if v.isdigit() and k in ("cores", "sockets", "template") else v for k, v in config.items()}


@route("GET", "/nodes/{node}/{kind}/{vmid}/pending")
async def get_pending(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
        rows: list[dict[str, Any]] = []
        for key in sorted(set(guest.config) | set(guest.pending)):
            row: dict[str, Any] = {"key": key}
            if key in guest.config:
                row["value"] = guest.config[key]
            if key in guest.pending:
                row["pending"] = guest.pending[key]
            rows.append(row)
        return rows


@route("POST", "/nodes/{node}/{kind}/{vmid}/status/start")
@route("POST", "/nodes/{node}/{kind}/{vmid}/status/shutdown")
@route("POST", "/nodes/{node}/{kind}/{vmid}/status/stop")
@route("POST", "/nodes/{node}/{kind}/{vmid}/status/reboot")
@route("POST", "/nodes/{node}/{kind}/{vmid}/status/suspend")
@route("POST", "/nodes/{node}/{kind}/{vmid}/status/resume")
@route("POST", "/nodes/{node}/qemu/{vmid}/status/reset")
async def power(ctx: SimContext, call: Call) -> Any:
    action = call.path.rsplit("/", 1)[1]
    with ctx.state.lock:
        guest = ctx.guest(call)

        async def work(task: SimTask) -> None:
            with ctx.state.lock:
                _power_precondition(guest, action)
                if action in ("start", "reboot"):
                    api_network.check_bridges(guest, ctx.state.node(guest.node), guest.config)
            lines = ["generating cloud-init ISO"] if action == "start" and "ipconfig0" in guest.config else []
            await ctx.tasks.progress(task, lines)
            with ctx.state.lock:
                _power_apply(guest, action)
                if action == "start" and guest.kind == "qemu":
                    api_network.regenerate(guest)  # qemu-server writes the cloud-init drive at every start

        return ctx.tasks.start(
            node=call.node, type_=TASK_PREFIX[call.kind] + action, id_=str(call.vmid), user=call.user,
            work=work, guest=guest,
        )


def _power_precondition(guest: SimGuest, action: str) -> None:
    label = f"{guest.type_label} {guest.vmid}"
    if guest.lock and action not in ("stop", "resume"):
        raise TaskFailed(f"{label} is locked ({guest.lock})")
    if action == "start":
        if guest.template:
            raise TaskFailed("you can't start a vm if it's a template")
        if guest.status == "running":
            raise TaskFailed(f"{label} already running")
    elif guest.status != "running":
        raise TaskFailed(f"{label} not running")
    elif action == "resume" and guest.kind == "qemu" and guest.qmpstatus != "paused":
        raise TaskFailed(f"{label} not paused")


def _power_apply(guest: SimGuest, action: str) -> None:
    if action == "start":
        guest.set_running(True)
    elif action in ("shutdown", "stop"):
        guest.set_running(False)
    elif action == "reboot":
        guest.set_running(False)
        guest.set_running(True)
    elif action == "suspend" and guest.kind == "qemu":
        guest.qmpstatus = "paused"
    elif action == "resume" and guest.kind == "qemu":
        guest.qmpstatus = "running"


@route("POST", "/nodes/{node}/{kind}/{vmid}/clone")
async def clone(ctx: SimContext, call: Call) -> Any:
    p = call.params
    newid = int(p["newid"])
    with ctx.state.lock:
        source = ctx.guest(call)
        check_config_lock(source)
        if newid in ctx.state.guests:
            raise ApiError(500, f"unable to create {source.type_label} {newid}: config file already exists")
        pool = p.get("pool")
        if pool is not None and pool not in ctx.state.pools:
            raise ApiError(500, f"pool '{pool}' does not exist")
        target = p.get("target", call.node)
        ctx.state.node(target)
        full = p.get("full", "0" if source.template else "1") == "1"
        if not full and not source.template:
            raise ApiError(500, "Linked clone feature is not available for a non-template guest")
        config = copy.deepcopy(source.config)
        config.pop("template", None)
        name_key = "name" if call.kind == "qemu" else "hostname"
        config[name_key] = p.get(name_key, f"Copy-of-{source.name}")
        disk, props = source.disk_key, source.disk()
        src_volume = props[source.volume_key]
        base = f"base-{source.vmid}-disk-0/" if not full else ""  # a linked clone names its base volume
        props[source.volume_key] = f"local-lvm:{base}vm-{newid}-disk-0"
        config[disk] = format_property_string(props, default_key=source.volume_key)
        # a clone is a new machine: new MACs, and for qemu a new SMBIOS uuid, generation id and creation time
        renew_macs(config)
        if call.kind == "qemu":
            config.update(new_identity())
            for key, value in list(config.items()):
                if "cloudinit" in value:  # the clone gets its own cloud-init volume
                    config[key] = value.replace(f"vm-{source.vmid}-cloudinit", f"vm-{newid}-cloudinit")
        guest = SimGuest(vmid=newid, kind=call.kind, node=target, pool=pool, status="stopped", config=config,
                         qmpstatus="stopped" if call.kind == "qemu" else None, lock="clone")
        ctx.state.guests[newid] = guest
        total = source.disk_bytes

    async def work(task: SimTask) -> None:
        try:
            if call.kind == "qemu" and full:
                lines = [f"create full clone of drive {disk} ({src_volume})"]
                lines += percent_lines("transferred {done} of {total} ({pct:.2f}%)", total=total)
                lines = [_render_transfer(line, total) for line in lines]
            elif call.kind == "qemu":
                lines = [f"create linked clone of drive {disk} ({src_volume})"]
            else:
                lines = [f"create full clone of mountpoint rootfs ({src_volume})"]
            await ctx.tasks.progress(task, lines)
        except BaseException:
            with ctx.state.lock:
                ctx.state.guests.pop(newid, None)
            raise
        with ctx.state.lock:
            guest.lock = None

    with ctx.state.lock:
        upid = ctx.tasks.start(node=call.node, type_=TASK_PREFIX[call.kind] + "clone", id_=str(call.vmid),
                               user=call.user, work=work, guest=guest)
    return upid


def _render_transfer(line: str, total: int) -> str:
    if not line.startswith("transferred "):
        return line
    words = line.split()
    done = int(words[1])
    return f"transferred {render_bytes(done)} of {render_bytes(total)} {words[-1]}"


def _apply_config(guest: SimGuest, params: dict[str, str], *, node: Any = None) -> None:
    changes = {k: v for k, v in params.items() if k not in NOT_CONFIG}
    if guest.status == "running" and node is not None:
        # a NIC of a running guest is hot-plugged at once, onto a bridge that must exist
        api_network.check_bridges(guest, node, {k: v for k, v in changes.items() if k.startswith("net")})
    for key, value in changes.items():
        if guest.kind == "qemu" and guest.status == "running" and key in COLD_OPTIONS:
            guest.pending[key] = value
        else:
            guest.config[key] = value
    for key in filter(None, params.get("delete", "").split(",")):
        guest.config.pop(key.strip(), None)


def _check_digest(guest: SimGuest, params: dict[str, str]) -> None:
    if "digest" in params and params["digest"] != guest.digest():
        raise ApiError(500, "detected modified configuration - file changed by other user? Try again.")


@route("POST", "/nodes/{node}/qemu/{vmid}/config")
async def post_config(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
        check_config_lock(guest)
        _check_digest(guest, call.params)
        api_network.check_params(guest, call.params)
        params = api_network.complete_nics(guest, call.params)

        async def work(task: SimTask) -> None:
            await ctx.tasks.progress(task, [f"update VM {guest.vmid}: " + _describe(params)])
            with ctx.state.lock:
                _apply_config(guest, params, node=ctx.state.node(guest.node))

        return ctx.tasks.start(node=call.node, type_="qmconfig", id_=str(call.vmid), user=call.user, work=work,
                               guest=guest)


@route("PUT", "/nodes/{node}/{kind}/{vmid}/config")
async def put_config(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
    await ctx.wait_lock_file(guest)
    with ctx.state.lock:
        check_config_lock(guest)
        _check_digest(guest, call.params)
        api_network.check_params(guest, call.params)
        try:
            _apply_config(guest, api_network.complete_nics(guest, call.params), node=ctx.state.node(guest.node))
        except TaskFailed as e:  # synchronous here: the hotplug failure is the answer
            raise ApiError(500, str(e)) from e
    return None


def _describe(params: dict[str, str]) -> str:
    return " ".join(f"-{k} {v}" for k, v in sorted(params.items()) if k not in ("node", "vmid", "digest"))


@route("PUT", "/nodes/{node}/{kind}/{vmid}/resize")
async def resize(ctx: SimContext, call: Call) -> Any:
    disk, size = call.params["disk"], call.params["size"]
    with ctx.state.lock:
        guest = ctx.guest(call)
        check_config_lock(guest)
        _check_digest(guest, call.params)
        if disk not in guest.config:
            raise ApiError(500, f"disk '{disk}' does not exist")
        size_now = guest.disk(disk).get("size")
        current = size_to_bytes(size_now) if size_now else 0
        new = current + size_to_bytes(size[1:]) if size.startswith("+") else size_to_bytes(size)
        if new < current:
            raise ApiError(500, "shrinking disks is not supported")

    async def work(task: SimTask) -> None:
        await ctx.tasks.progress(task, [f"Size of logical volume changed from {render_bytes(current)} to "
                                        f"{render_bytes(new)}."])
        with ctx.state.lock:
            props = guest.disk(disk)
            props.pop("size", None)  # written last, as before the resize
            props["size"] = bytes_to_size(new)
            guest.config[disk] = format_property_string(props, default_key=guest.volume_key)

    with ctx.state.lock:
        return ctx.tasks.start(node=call.node, type_="resize", id_=str(call.vmid), user=call.user, work=work,
                               guest=guest)


def _remove_from_backup_jobs(ctx: SimContext, vmid: int) -> None:
    """pve-guest-common's ``remove_vmid_from_backup_jobs``: out of each vzdump job's ``vmid`` list (a job
    left with none is deleted) or its ``exclude`` list (an empty one is dropped)."""
    for job_id, job in list(ctx.state.backup_jobs.items()):
        for key in ("vmid", "exclude"):
            if key not in job:
                continue
            rest = ",".join(v for v in job[key].replace(";", ",").replace(" ", ",").split(",") if v and v != str(vmid))
            if rest:
                job[key] = rest
            elif key == "vmid":
                del ctx.state.backup_jobs[job_id]
            else:
                del job[key]
            break  # a job selects by vmid, or else by exclude: only that one list is changed


@route("DELETE", "/nodes/{node}/{kind}/{vmid}")
async def destroy(ctx: SimContext, call: Call) -> Any:
    # "Remove VMID from configurations, like backup & replication jobs and HA."
    purge = call.flag("purge")
    with ctx.state.lock:
        guest = ctx.guest(call)
        if guest.status == "running":
            raise ApiError(500, f"{guest.type_label} {guest.vmid} is running - destroy failed")
        check_config_lock(guest)

    async def work(task: SimTask) -> None:
        await ctx.tasks.progress(task, [f"  Logical volume \"vm-{guest.vmid}-disk-0\" successfully removed."])
        with ctx.state.lock:
            if guest.status == "running":
                raise TaskFailed(f"{guest.type_label} {guest.vmid} is running - destroy failed")
            ctx.state.guests.pop(guest.vmid, None)
            if purge:
                _remove_from_backup_jobs(ctx, guest.vmid)

    with ctx.state.lock:
        return ctx.tasks.start(node=call.node, type_=TASK_PREFIX[call.kind] + "destroy", id_=str(call.vmid),
                               user=call.user, work=work, guest=guest)


@route("GET", "/nodes/{node}/{kind}/{vmid}/snapshot")
async def list_snapshots(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
        rows: list[dict[str, Any]] = []
        for snap in guest.snapshots.values():
            row: dict[str, Any] = {"name": snap.name, "description": snap.description, "snaptime": snap.snaptime}
            if snap.parent:
                row["parent"] = snap.parent
            if guest.kind == "qemu":
                row["vmstate"] = 1 if snap.vmstate else 0
            rows.append(row)
        current: dict[str, Any] = {"name": "current", "description": "You are here!", "digest": guest.digest()}
        if guest.parent:
            current["parent"] = guest.parent
        if guest.status == "running":
            current["running"] = 1
        return [*rows, current]


@route("POST", "/nodes/{node}/{kind}/{vmid}/snapshot")
async def create_snapshot(ctx: SimContext, call: Call) -> Any:
    name = call.params["snapname"]
    with ctx.state.lock:
        guest = ctx.guest(call)
        check_config_lock(guest)
        if name in guest.snapshots or name == "current":
            raise ApiError(500, f"snapshot name '{name}' already used")
        vmstate = call.flag("vmstate") and guest.status == "running"

    async def work(task: SimTask) -> None:
        lines = [f"snapshotting '{'drive-scsi0' if guest.kind == 'qemu' else 'rootfs'}' ({guest.disk_key})"]
        if vmstate:
            lines.insert(0, "saving VM state and RAM using storage 'local-lvm'")
        await ctx.tasks.progress(task, lines)
        with ctx.state.lock:
            guest.snapshots[name] = SimSnapshot(
                name=name, description=call.params.get("description", ""), snaptime=int(time.time()),
                parent=guest.parent, vmstate=vmstate, config=copy.deepcopy(guest.config),
            )
            guest.parent = name

    with ctx.state.lock:
        return ctx.tasks.start(node=call.node, type_=TASK_PREFIX[call.kind] + "snapshot", id_=str(call.vmid),
                               user=call.user, work=work, guest=guest, config_lock="snapshot")


def _snapshot(guest: SimGuest, name: str) -> SimSnapshot:
    snap = guest.snapshots.get(name)
    if snap is None:
        raise ApiError(500, f"snapshot '{name}' does not exist")
    return snap


@route("POST", "/nodes/{node}/{kind}/{vmid}/snapshot/{snapname}/rollback")
async def rollback_snapshot(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
        check_config_lock(guest)
        snap = _snapshot(guest, call.path_params["snapname"])

    async def work(task: SimTask) -> None:
        await ctx.tasks.progress(task, [f"rollback to snapshot '{snap.name}'"])
        with ctx.state.lock:
            was_template = guest.template
            guest.set_running(False)
            guest.config = copy.deepcopy(snap.config)
            if was_template:
                guest.config["template"] = "1"
            guest.parent = snap.name
            if snap.vmstate or call.flag("start"):
                guest.set_running(True)

    with ctx.state.lock:
        return ctx.tasks.start(node=call.node, type_=TASK_PREFIX[call.kind] + "rollback", id_=str(call.vmid),
                               user=call.user, work=work, guest=guest, config_lock="rollback")


@route("DELETE", "/nodes/{node}/{kind}/{vmid}/snapshot/{snapname}")
async def delete_snapshot(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
        check_config_lock(guest)
        snap = _snapshot(guest, call.path_params["snapname"])

    async def work(task: SimTask) -> None:
        await ctx.tasks.progress(task, [f"delete snapshot '{snap.name}'"])
        with ctx.state.lock:
            for other in guest.snapshots.values():
                if other.parent == snap.name:
                    other.parent = snap.parent
            if guest.parent == snap.name:
                guest.parent = snap.parent
            guest.snapshots.pop(snap.name, None)

    with ctx.state.lock:
        return ctx.tasks.start(node=call.node, type_=TASK_PREFIX[call.kind] + "delsnapshot", id_=str(call.vmid),
                               user=call.user, work=work, guest=guest, config_lock="snapshot-delete")


@route("GET", "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces")
async def agent_interfaces(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
        if guest.status != "running":
            raise ApiError(500, f"VM {guest.vmid} is not running")
        if not guest.agent_enabled():
            raise ApiError(500, "No QEMU guest agent configured")
        if guest.ip is None:
            raise ApiError(500, "QEMU guest agent is not running")
        return {"result": [_iface("lo", "127.0.0.1", 8, "00:00:00:00:00:00"),
                           _iface("eth0", guest.ip, 24, guest.mac())]}


@route("GET", "/nodes/{node}/lxc/{vmid}/interfaces")
async def lxc_interfaces(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
        if guest.status != "running":
            raise ApiError(500, f"CT {guest.vmid} not running")
        rows = [_iface("lo", "127.0.0.1", 8, "00:00:00:00:00:00")]
        if guest.ip:
            rows.append(_iface("eth0", guest.ip, 24, guest.mac()))
        for row in rows:
            row["hwaddr"] = row["hardware-address"]
            row["inet"] = f"{row['ip-addresses'][0]['ip-address']}/{row['ip-addresses'][0]['prefix']}"
        return rows


def _iface(name: str, ip: str, prefix: int, mac: str) -> dict[str, Any]:
    return {
        "name": name,
        "hardware-address": mac,
        "ip-addresses": [{"ip-address": ip, "ip-address-type": "ipv4", "prefix": prefix}],
    }
