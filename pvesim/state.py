"""What the simulated cluster holds: nodes, storages, pools, guests, snapshots and backups.

Plain data plus the answers Proxmox derives from it (``/cluster/resources`` rows, ``status/current``,
config with its ``digest``). Callers hold ``SimState.lock``: the server loop thread and the test
thread (``add_*``, faults) both touch this state.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pvesim.propstring import parse_boolean, parse_property_string

MiB = 1024 * 1024
GiB = 1024 * MiB


class ApiError(Exception):
    """An answer other than 200: PVE puts the message in the HTTP reason phrase."""

    def __init__(self, status: int, message: str, *, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors


def conf_error(kind: str, node: str, vmid: int) -> ApiError:
    folder = "qemu-server" if kind == "qemu" else "lxc"
    return ApiError(500, f"Configuration file 'nodes/{node}/{folder}/{vmid}.conf' does not exist")


def size_to_bytes(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": GiB, "T": 1024 * GiB}
    text = text.strip()
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


def bytes_to_size(n: int) -> str:
    for unit, scale in (("T", 1024 * GiB), ("G", GiB), ("M", MiB), ("K", 1024)):
        if n % scale == 0:
            return f"{n // scale}{unit}"
    return str(n)


def default_network() -> dict[str, dict[str, Any]]:
    """A node's interfaces as a fresh PVE install has them: one NIC and a VLAN-aware bridge on it."""
    return {
        "eno1": {"iface": "eno1", "type": "eth", "method": "manual", "method6": "manual", "active": 1,
                 "exists": 1, "families": ["inet"], "priority": 3},
        "vmbr0": {"iface": "vmbr0", "type": "bridge", "method": "static", "method6": "manual", "active": 1,
                  "autostart": 1, "bridge_ports": "eno1", "bridge_stp": "off", "bridge_fd": "0",
                  "bridge_vlan_aware": 1, "bridge_vids": "2-4094", "cidr": "192.0.2.11/24",
                  "address": "192.0.2.11", "netmask": "24", "gateway": "192.0.2.1", "families": ["inet"],
                  "priority": 4},
    }


# what /cluster/resources reports of each guest, from its config strings: a 20,000-guest answer parsed
# 50,000 property strings each time; the strings rarely change, so each is parsed once
@lru_cache(maxsize=1 << 16)
def _disk_size(spec: str, volume_key: str) -> int:
    size = parse_property_string(spec, default_key=volume_key).get("size")
    return size_to_bytes(size) if size else 0


@lru_cache(maxsize=1 << 16)
def _memory(spec: str) -> int:
    return int(parse_property_string(spec, default_key="current")["current"]) * MiB


@dataclass
class SimNode:
    name: str
    online: bool = True
    # iface -> its /nodes/{node}/network row
    network: dict[str, dict[str, Any]] = field(default_factory=default_network)
    # what the node's repositories offer (package -> the apt/update row apt-get update would find) ...
    repository: dict[str, dict[str, str]] = field(default_factory=dict)
    # ... and what the last apt-get update cached in /var/lib/pve-manager/pkgupdates, which GET apt/update reads
    pkgupdates: list[dict[str, str]] = field(default_factory=list)
    # GET apt/versions: the Proxmox packages as installed
    versions: list[dict[str, str]] = field(default_factory=list)

    def bridges(self) -> set[str]:
        return {i for i, row in self.network.items() if row.get("type") in ("bridge", "OVSBridge")}


@dataclass
class SimStorage:
    name: str
    nodes: tuple[str, ...] | None  # None: on every node
    content: frozenset[str]
    shared: bool = False

    def on(self, node: str) -> bool:
        return self.nodes is None or node in self.nodes


@dataclass
class SimSnapshot:
    name: str
    description: str
    snaptime: int
    parent: str | None
    vmstate: bool
    config: dict[str, str]


@dataclass
class SimBackup:
    volid: str
    storage: str
    node: str
    vmid: int
    kind: str
    ctime: int
    size: int
    notes: str
    config: dict[str, str]
    name: str
    protected: bool = False


@dataclass
class SimGuest:
    vmid: int
    kind: str
    node: str
    pool: str | None
    status: str  # running | stopped
    config: dict[str, str]
    qmpstatus: str | None = None  # qemu: running | paused | stopped
    pending: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, SimSnapshot] = field(default_factory=dict)
    parent: str | None = None
    lock: str | None = None  # the config "lock:" property (backup, snapshot, clone, ...)
    busy_upid: str | None = None  # a running task holds the guest's lock file
    ip: str | None = None
    started_at: float | None = None
    # the cloud-init settings as last written to its cloud-init drive (qemu), None if never generated
    cloudinit: dict[str, str] | None = None

    @property
    def type_label(self) -> str:
        return "VM" if self.kind == "qemu" else "CT"

    @property
    def name(self) -> str:
        return self.config.get("name" if self.kind == "qemu" else "hostname", f"{self.kind}-{self.vmid}")

    @property
    def template(self) -> bool:
        return self.config.get("template") == "1"

    @property
    def disk_key(self) -> str:
        return "scsi0" if self.kind == "qemu" else "rootfs"

    @property
    def volume_key(self) -> str:
        """The default key of the disk's property string: qemu-server's ``file``, pct's ``volume``."""
        return "file" if self.kind == "qemu" else "volume"

    def disk(self, key: str | None = None) -> dict[str, str]:
        """A disk's property string, parsed (``{"file": "local-lvm:vm-100-disk-0", "size": "32G"}``).

        ``key`` is the config key (``scsi1``, ``mp0``); the boot disk when None.
        """
        return parse_property_string(self.config.get(key or self.disk_key, ""), default_key=self.volume_key)

    @property
    def disk_bytes(self) -> int:
        return _disk_size(self.config.get(self.disk_key, ""), self.volume_key)

    def agent_enabled(self) -> bool:
        """``agent: 1`` or ``agent: enabled=yes,fstrim_cloned_disks=1``: booleans as property strings take them."""
        enabled = parse_property_string(self.config.get("agent", "0"), default_key="enabled").get("enabled", "0")
        return parse_boolean(enabled) is True

    @property
    def lock_file(self) -> str:
        if self.kind == "qemu":
            return f"/var/lock/qemu-server/lock-{self.vmid}.conf"
        return f"/run/lock/lxc/pve-config-{self.vmid}.lock"

    def mac(self, index: int = 0) -> str:
        """The MAC of NIC ``index`` as its config says (qemu ``virtio=…``, lxc ``hwaddr=…``)."""
        found = re.search(r"(?i)(?:=)([0-9A-F]{2}(?::[0-9A-F]{2}){5})", self.config.get(f"net{index}", ""))
        return found.group(1) if found else "00:00:00:00:00:00"

    def digest(self) -> str:
        text = "\n".join(f"{k}: {v}" for k, v in sorted(self.config.items()))
        return hashlib.sha1(text.encode()).hexdigest()

    def set_running(self, running: bool) -> None:
        self.status = "running" if running else "stopped"
        self.started_at = time.time() if running else None
        if self.kind == "qemu":
            self.qmpstatus = self.status
        if not running:
            # pending changes apply at the next start, as in qemu-server
            self.config.update(self.pending)
            self.pending.clear()

    def uptime(self) -> int:
        return int(time.time() - self.started_at) if self.started_at else 0

    def tags(self) -> str | None:
        return self.config.get("tags")

    def memory_bytes(self) -> int:
        return _memory(self.config.get("memory", "512"))

    def resource_row(self, *, node_online: bool) -> dict[str, Any]:
        row: dict[str, Any] = {
            "id": f"{self.kind}/{self.vmid}",
            "type": self.kind,
            "vmid": self.vmid,
            "name": self.name,
            "node": self.node,
            "template": 1 if self.template else 0,
        }
        if self.pool:
            row["pool"] = self.pool
        if self.tags():
            row["tags"] = self.tags()
        if not node_online:
            row["status"] = "unknown"
            return row
        running = self.status == "running"
        row.update(
            status=self.status,
            maxcpu=int(self.config.get("cores", "1")),
            cpu=0.013 if running else 0,
            maxmem=self.memory_bytes(),
            mem=self.memory_bytes() // 3 if running else 0,
            maxdisk=self.disk_bytes,
            # qemu reports 0 used disk without the guest agent; lxc knows its rootfs usage
            disk=self.disk_bytes // 4 if self.kind == "lxc" and running else 0,
            uptime=self.uptime(),
            netin=0,
            netout=0,
            diskread=0,
            diskwrite=0,
        )
        if self.lock:
            row["lock"] = self.lock
        return row

    def current_status(self) -> dict[str, Any]:
        running = self.status == "running"
        data: dict[str, Any] = {
            "vmid": self.vmid,
            "name": self.name,
            "status": self.status,
            "cpus": int(self.config.get("cores", "1")),
            "cpu": 0.013 if running else 0,
            "maxmem": self.memory_bytes(),
            "mem": self.memory_bytes() // 3 if running else 0,
            "maxdisk": self.disk_bytes,
            "disk": 0,
            "uptime": self.uptime(),
            "netin": 0,
            "netout": 0,
            "diskread": 0,
            "diskwrite": 0,
            "ha": {"managed": 0},
        }
        if self.kind == "qemu":
            data["qmpstatus"] = self.qmpstatus or self.status
            if self.agent_enabled():
                data["agent"] = 1
            if running:
                data["pid"] = 10000 + self.vmid
        else:
            data["type"] = "lxc"
            data["maxswap"] = int(self.config.get("swap", "512")) * MiB
            data["swap"] = 0
        if self.template:
            data["template"] = 1
        if self.lock:
            data["lock"] = self.lock
        if self.tags():
            data["tags"] = self.tags()
        return data


def new_mac() -> str:
    """A MAC as Proxmox generates one: its own OUI (BC:24:11), the rest random, fresh for every new guest."""
    tail = secrets.token_bytes(3)
    return "BC:24:11:" + ":".join(f"{b:02X}" for b in tail)


def new_identity() -> dict[str, str]:
    """What qemu-server writes into a new VM's config (on create and on clone, never on a later change):
    a random SMBIOS uuid, a VM generation id, and the creation time in ``meta``."""
    return {
        "smbios1": f"uuid={uuid.uuid4()}",
        "vmgenid": str(uuid.uuid4()),
        "meta": f"creation-qemu=9.0.2,ctime={int(time.time())}",
    }


def renew_macs(config: dict[str, str]) -> None:
    """A clone gets new MAC addresses on every NIC (qemu ``virtio=``/``e1000=``, lxc ``hwaddr=``)."""
    for key, value in list(config.items()):
        if key.startswith("net") and key[3:].isdigit():
            config[key] = re.sub(r"(?i)([=])([0-9A-F]{2}(?::[0-9A-F]{2}){5})", lambda m: m.group(1) + new_mac(), value)


def default_config(
    *, vmid: int, kind: str, name: str, cores: int, memory_mb: int, disk_gb: int, tags: tuple[str, ...],
    ip: str | None, template: bool,
) -> dict[str, str]:
    disk_prefix = "base" if template else "vm"
    disk = f"local-lvm:{disk_prefix}-{vmid}-disk-0,size={disk_gb}G"
    if kind == "qemu":
        config = {
            "name": name,
            "cores": str(cores),
            "sockets": "1",
            "memory": str(memory_mb),
            "ostype": "l26",
            "agent": "1",
            "scsihw": "virtio-scsi-single",
            "scsi0": f"{disk},iothread=1",
            "boot": "order=scsi0",
            "net0": f"virtio={new_mac()},bridge=vmbr0,firewall=1",
            "ide2": f"local-lvm:vm-{vmid}-cloudinit,media=cdrom",
            **new_identity(),
        }
        if ip:
            config["ipconfig0"] = f"ip={ip}/24,gw={ip.rsplit('.', 1)[0]}.1"
    else:
        net = f"name=eth0,bridge=vmbr0,hwaddr={new_mac()},type=veth"
        net += f",ip={ip}/24,gw={ip.rsplit('.', 1)[0]}.1" if ip else ",ip=dhcp"
        config = {
            "hostname": name,
            "cores": str(cores),
            "memory": str(memory_mb),
            "swap": "512",
            "ostype": "debian",
            "arch": "amd64",
            "unprivileged": "1",
            "rootfs": disk,
            "net0": net,
        }
    if tags:
        config["tags"] = ";".join(tags)
    if template:
        config["template"] = "1"
    return config


class SimState:
    """The whole simulated cluster. Hold ``lock`` while reading or changing anything."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.nodes: dict[str, SimNode] = {}
        self.storages: dict[str, SimStorage] = {}
        self.pools: set[str] = set()
        self.guests: dict[int, SimGuest] = {}
        self.backups: dict[str, SimBackup] = {}
        # /etc/pve/jobs.cfg's vzdump sections: id -> options as the API took them
        self.backup_jobs: dict[str, dict[str, str]] = {}
        # how the next backups of a guest end: ("error" | "warning", the reason vzdump logs)
        self.backup_outcomes: dict[int, tuple[str, str]] = {}
        self.tokens: dict[str, tuple[str, frozenset[str] | None]] = {}
        # GET /cluster/status: the corosync cluster's name and whether it has quorum
        self.cluster_name = "lab"
        self.quorate = True
        # /etc/pve/notifications.cfg: webhook targets and matchers as the API took them; the
        # secrets (priv/notifications.cfg) apart, never returned by the API
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.webhook_secrets: dict[str, dict[str, str]] = {}
        self.matchers: dict[str, dict[str, Any]] = {}
        # every webhook request sent: (target, url, headers, body, HTTP status or the error)
        self.webhook_sent: list[tuple[str, str, dict[str, str], str, str]] = []

    def node(self, name: str) -> SimNode:
        found = self.nodes.get(name)
        if found is None:
            raise ApiError(500, f"hostname lookup '{name}' failed - failed to get address info for: {name}")
        if not found.online:
            raise ApiError(595, "No route to host")
        return found

    def guest(self, *, node: str, kind: str, vmid: int) -> SimGuest:
        """The guest at this path, as Proxmox finds it: by its config file on that node."""
        self.node(node)
        found = self.guests.get(vmid)
        if found is None or found.node != node or found.kind != kind:
            raise conf_error(kind, node, vmid)
        return found

    def storage(self, name: str, *, node: str) -> SimStorage:
        found = self.storages.get(name)
        if found is None or not found.on(node):
            raise ApiError(500, f"storage '{name}' does not exist")
        return found

    def next_vmid(self) -> int:
        vmid = 100
        while vmid in self.guests:
            vmid += 1
        return vmid
