"""Pure translations between Proxmox's JSON and the core's value objects. No I/O here."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from adapters.proxmox.props import parse_props, with_props
from core.errors import ConfigurationError, InvalidArguments
from core.guest_index import RowPlace
from core.model import Backup, BackupJob, Guest, GuestIdentity, GuestRef, Nic, Snapshot, TaskInfo

# From pve-common (via the shipped formats): UPID, pve-configid.
UPID_RE = re.compile(
    r"^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):"
    r"([^:\s/]+):([^:\s/]*):([^:\s/]+):$"
)
CONFIGID_RE = re.compile(r"^(?i:[a-z][a-z0-9_-]+)$")
SIZE_RE = re.compile(r"^\+?\d+(\.\d+)?[KMGT]?$")
TOKEN_ID_RE = re.compile(r"^(?P<user>[^\s!@]+@[^\s!@]+)!(?P<name>[A-Za-z][A-Za-z0-9._-]*)$")

POWER_ACTIONS = ("start", "shutdown", "stop", "reboot", "reset", "suspend", "resume")
KINDS = ("qemu", "lxc")

# Where Proxmox logs progress: qemu-img/drive-mirror clones, vzdump of VMs, qmrestore.
_PERCENT_PATTERNS = (
    re.compile(r"^transferred .* \((\d+(?:\.\d+)?)%\)$"),
    re.compile(r"^INFO:\s+(\d+(?:\.\d+)?)% \("),
    re.compile(r"^progress (\d+(?:\.\d+)?)% \("),
    re.compile(r"drive-\S+: transferred .* \((\d+(?:\.\d+)?)%\)"),
)


def split_token_id(token_id: str, *, cluster: str) -> tuple[str, str]:
    """``user@realm!name`` -> (``user@realm``, ``name``)."""
    m = TOKEN_ID_RE.match(token_id)
    if not m:
        raise ConfigurationError(f"cluster {cluster}: the token id must look like user@realm!tokenname")
    return m.group("user"), m.group("name")


def is_upid(value: object) -> bool:
    return isinstance(value, str) and UPID_RE.match(value) is not None


def _tags(raw: object) -> tuple[str, ...]:
    return tuple(t for t in re.split(r"[;,\s]+", str(raw or "")) if t)


def resource_place(row: dict[str, Any]) -> RowPlace:
    """Where the guest index files a ``/cluster/resources?type=vm`` row, without making its guest."""
    # every row, every refresh: positional, and no conversion where JSON gave the type already
    vmid, template = row["vmid"], row.get("template")
    return RowPlace(vmid if type(vmid) is int else int(vmid), row.get("pool") or None,
                    bool(template if type(template) is int else int(template or 0)))


def resource_name(row: dict[str, Any]) -> str:
    """The name of a ``/cluster/resources?type=vm`` row's guest (Proxmox may leave it out)."""
    name = row.get("name")
    return name if type(name) is str and name else str(name or f"{row['type']}-{row['vmid']}")


def guest_from_resource(cluster: str, row: dict[str, Any]) -> Guest:
    """One ``/cluster/resources?type=vm`` row."""
    place = resource_place(row)
    return Guest(
        cluster=cluster,
        vmid=place.vmid,
        name=resource_name(row),
        kind=str(row["type"]),
        node=str(row["node"]),
        status=str(row.get("status", "unknown")),
        pool=place.pool,
        template=place.template,
        maxcpu=int(row.get("maxcpu") or 0),
        cpu=float(row.get("cpu") or 0.0),
        maxmem=int(row.get("maxmem") or 0),
        mem=int(row.get("mem") or 0),
        maxdisk=int(row.get("maxdisk") or 0),
        disk=int(row.get("disk") or 0),
        uptime=int(row.get("uptime") or 0),
        tags=_tags(row.get("tags")),
        lock=row.get("lock") or None,
    )


def guest_from_status(ref: GuestRef, data: dict[str, Any], *, pool: str | None) -> Guest:
    """``status/current`` of one guest; the pool comes from the inventory (status does not carry it)."""
    return Guest(
        cluster=ref.cluster,
        vmid=ref.vmid,
        name=str(data.get("name") or f"{ref.kind}-{ref.vmid}"),
        kind=ref.kind,
        node=ref.node,
        status=str(data.get("status", "unknown")),
        pool=pool,
        template=bool(int(data.get("template") or 0)),
        maxcpu=int(data.get("cpus") or 0),
        cpu=float(data.get("cpu") or 0.0),
        maxmem=int(data.get("maxmem") or 0),
        mem=int(data.get("mem") or 0),
        maxdisk=int(data.get("maxdisk") or 0),
        disk=int(data.get("disk") or 0),
        uptime=int(data.get("uptime") or 0),
        tags=_tags(data.get("tags")),
        lock=data.get("lock") or None,
    )


_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")


def identity_from_config(kind: str, config: dict[str, Any]) -> GuestIdentity:
    """The witnesses of a guest's identity in its config (see :class:`core.model.GuestIdentity`).

    qemu: ``smbios1``'s uuid and ``meta``'s ctime, both written once when the VM is created or
    cloned. ``vmgenid`` is left out on purpose: qemu-server renews it on snapshot rollback and
    restore, which are changes to the same VM. lxc: the ``hwaddr`` of each ``net[n]``, generated
    for every new container and every clone.
    """
    name = config.get("name" if kind == "qemu" else "hostname")
    if kind == "qemu":
        smbios = {k: v for k, v in parse_props(str(config.get("smbios1") or ""))}
        meta = {k: v for k, v in parse_props(str(config.get("meta") or ""))}
        ctime = meta.get("ctime")
        uuid = smbios.get("uuid")
        return GuestIdentity(uuid=uuid.lower() if uuid else None,
                             created=int(ctime) if ctime and ctime.isdigit() else None,
                             name=None if name is None else str(name))
    macs = set()
    for key, value in config.items():
        if re.fullmatch(r"net\d+", key):
            mac = {k: v for k, v in parse_props(str(value))}.get("hwaddr")
            if mac and _MAC_RE.match(mac):
                macs.add(mac.upper())
    return GuestIdentity(macs=frozenset(macs), name=None if name is None else str(name))


def config_strings(config: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in config.items() if k != "digest"}


def current_config(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The config in force, from ``/pending``'s rows (a key only pending has no current value)."""
    return config_strings({str(row["key"]): row["value"] for row in rows if "value" in row})


def pending_changes(rows: Iterable[dict[str, Any]]) -> dict[str, str]:
    """Only the keys with a pending value or a pending deletion."""
    pending: dict[str, str] = {}
    for row in rows:
        if "pending" in row:
            pending[str(row["key"])] = str(row["pending"])
        elif row.get("delete"):
            pending[str(row["key"])] = "(delete)"
    return pending


def ips_from_interfaces(interfaces: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """Guest IPs from the qemu agent or lxc ``interfaces``, without loopback and link-local."""
    ips: list[str] = []
    for iface in interfaces:
        if iface.get("name") == "lo":
            continue
        for addr in iface.get("ip-addresses") or []:
            ip = str(addr.get("ip-address", ""))
            if ip and not ip.startswith(("127.", "fe80:", "::1")) and ip not in ips:
                ips.append(ip)
    return tuple(ips)


def snapshots_from_rows(rows: Iterable[dict[str, Any]]) -> list[Snapshot]:
    snaps = [
        Snapshot(
            name=str(r["name"]),
            description=str(r.get("description") or ""),
            parent=r.get("parent") or None,
            snaptime=int(r["snaptime"]) if r.get("snaptime") is not None else None,
            vmstate=bool(int(r.get("vmstate") or 0)),
        )
        for r in rows
        if r.get("name") != "current"
    ]
    return _parents_first(snaps)


def _parents_first(snaps: list[Snapshot]) -> list[Snapshot]:
    """Oldest first: a snapshot after its parent (snaptime has only second resolution), siblings by time."""
    names = {s.name for s in snaps}
    children: dict[str | None, list[Snapshot]] = {}
    for snap in snaps:
        children.setdefault(snap.parent if snap.parent in names else None, []).append(snap)
    ordered: list[Snapshot] = []
    stack = sorted(children.get(None, []), key=lambda s: (s.snaptime or 0, s.name), reverse=True)
    while stack:
        snap = stack.pop()
        ordered.append(snap)
        stack.extend(sorted(children.get(snap.name, []), key=lambda s: (s.snaptime or 0, s.name), reverse=True))
    return ordered


def backups_from_rows(rows: Iterable[dict[str, Any]], *, storage: str, node: str | None = None) -> list[Backup]:
    backups = []
    for r in rows:
        if r.get("content", "backup") != "backup":
            continue
        volid = str(r["volid"])
        verification = r.get("verification") if isinstance(r.get("verification"), dict) else None
        kind = str(r.get("subtype") or ("lxc" if "vzdump-lxc-" in volid or "/ct/" in volid else "qemu"))
        backups.append(Backup(
            volid=volid, storage=storage, vmid=int(r.get("vmid") or 0), size=int(r.get("size") or 0),
            ctime=int(r.get("ctime") or 0), format=str(r.get("format") or ""), notes=str(r.get("notes") or ""),
            protected=bool(int(r.get("protected") or 0)),
            verification=str(verification.get("state")) if verification and verification.get("state") else None,
            kind=kind, node=node,
        ))
    return sorted(backups, key=lambda b: (b.ctime, b.volid))


JOB_ID_RE = re.compile(r"^\S{1,50}$")
# the keys of a job listing that are the job's own, not vzdump options
JOB_FIELDS = ("id", "type", "schedule", "enabled", "next-run")


def check_job_id(job_id: str) -> None:
    if not JOB_ID_RE.match(job_id):
        raise InvalidArguments("a backup job id has 1 to 50 characters and no spaces")


def backup_job_from_row(row: dict[str, Any]) -> BackupJob:
    options = {k: str(v) for k, v in row.items() if k not in JOB_FIELDS and v is not None}
    next_run = row.get("next-run")
    return BackupJob(id=str(row["id"]), schedule=str(row.get("schedule") or ""), options=options,
                     enabled=bool(int(row.get("enabled", 1))), next_run=int(next_run) if next_run else None)


def task_from_row(row: dict[str, Any], *, node: str) -> TaskInfo:
    endtime = row.get("endtime")
    status = row.get("status")
    return TaskInfo(upid=str(row["upid"]), node=str(row.get("node") or node), type=str(row.get("type") or ""),
                    id=str(row.get("id") or ""), user=str(row.get("user") or ""),
                    starttime=int(row.get("starttime") or 0), endtime=int(endtime) if endtime else None,
                    status=None if status in (None, "running") else str(status))


def notes_template(notes: str | None) -> str:
    """A note for vzdump's ``notes-template``: one line, with ``\\`` and newlines escaped as vzdump reads them."""
    text = "{{guestname}}" if notes is None else notes
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    if len(text) > 1024:
        raise InvalidArguments("a backup note has at most 1024 characters")
    return text


def percent_in(line: str) -> float | None:
    for pattern in _PERCENT_PATTERNS:
        m = pattern.search(line)
        if m:
            return float(m.group(1))
    return None


def check_snapshot_name(name: str) -> None:
    if len(name) > 40 or not CONFIGID_RE.match(name):
        raise InvalidArguments(
            "a snapshot name starts with a letter, then letters, digits, '-' or '_' (2 to 40 characters)"
        )


def check_disk_size(size: str) -> None:
    if not SIZE_RE.match(size):
        raise InvalidArguments("a disk size looks like +10G (grow by) or 64G (grow to)")


def net_with_vlan(net: str, tag: int | None) -> str:
    if tag is not None and not 1 <= tag <= 4094:
        raise InvalidArguments("a VLAN tag is between 1 and 4094")
    return with_props(net, tag=None if tag is None else str(tag))


def lxc_net_with_ipconfig(net: str, ipconfig: str) -> str:
    """Containers carry their address in ``netN`` itself (``ip=``, ``gw=``), not in cloud-init ``ipconfigN``."""
    allowed = {"ip", "gw", "ip6", "gw6"}
    changes: dict[str, str | None] = {}
    for key, val in parse_props(ipconfig):
        if key not in allowed:
            raise InvalidArguments("an IP setting looks like ip=10.0.0.5/24,gw=10.0.0.1 (or ip=dhcp)")
        changes[key] = val
    if "ip" in changes and "gw" not in changes:
        changes["gw"] = None  # a new address without gateway must not keep the old one
    return with_props(net, **changes)


def check_ipconfig(ipconfig: str) -> None:
    for key, _ in parse_props(ipconfig):
        if key not in {"ip", "gw", "ip6", "gw6"}:
            raise InvalidArguments("an IP setting looks like ip=10.0.0.5/24,gw=10.0.0.1 (or ip=dhcp)")


_QEMU_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
                "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
_NET_KEY = re.compile(r"^net(\d+)$")


def nics_from_config(kind: str, config: dict[str, Any]) -> list[Nic]:
    """The NICs of a guest config: qemu addresses come from ``ipconfigN``, lxc ones from ``netN`` itself."""
    out = []
    for key in sorted(config, key=lambda k: (len(k), k)):
        m = _NET_KEY.match(key)
        if not m:
            continue
        index = int(m.group(1))
        props = dict((k or "model", v) for k, v in parse_props(str(config[key])))
        tag = props.get("tag")
        if kind == "qemu":
            mac = props.get("macaddr") or next((props[k] for k in _QEMU_MODELS if k in props and ":" in props[k]), None)
            ip = dict(parse_props(str(config.get(f"ipconfig{index}", "")))).get("ip")
        else:
            mac, ip = props.get("hwaddr"), props.get("ip")
        static = ip if ip and "/" in ip else None  # not dhcp, manual or absent
        out.append(Nic(index=index, bridge=props.get("bridge"), vlan=int(tag) if tag and tag.isdigit() else None,
                       mac=mac, address=static))
    return out


def net_with_address(kind: str, net: str, *, bridge: str | None, vlan: int | None, address: str | None,
                     gateway: str | None) -> str:
    """``netN`` with the bridge and VLAN of a range (its MAC and other settings kept); lxc also takes the address."""
    if vlan is not None and not 1 <= vlan <= 4094:
        raise InvalidArguments("a VLAN tag is between 1 and 4094")
    changes: dict[str, str | None] = {}
    if address is not None or bridge is not None:
        # taking an address off leaves the NIC where it is; giving one moves it onto the range's segment
        changes["tag"] = None if vlan is None else str(vlan)
    if bridge is not None:
        changes["bridge"] = bridge
    if kind == "lxc":
        changes["ip"] = address
        changes["gw"] = gateway if address else None
    return with_props(net, **changes)


def ipconfig_value(address: str, gateway: str | None) -> str:
    return f"ip={address}" + (f",gw={gateway}" if gateway else "")
