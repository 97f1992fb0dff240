"""The Proxmox VE gateway: :class:`core.ports.Hypervisor` for one cluster, over proxmoxer.

Inventory is one ``GET /cluster/resources?type=vm`` per refresh, indexed once per refresh and served
at most ``cache_seconds`` old, refreshed in the background before that (see :mod:`.inventory_cache`).
Asynchronous actions return a :class:`TaskRef` with the UPID; :meth:`ProxmoxHypervisor.task_status`
follows it, reading only the task-log lines it has not seen yet.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any
from urllib.parse import quote

from adapters.proxmox import mapping
from adapters.proxmox.inventory_cache import InventoryCache
from adapters.proxmox.transport import ClusterTransport
from core.errors import BotError, Conflict, InvalidArguments
from core.guest_index import GuestIndex
from core.model import (
    Backup,
    BackupJob,
    BackupStore,
    Cluster,
    ClusterState,
    Guest,
    GuestIdentity,
    GuestRef,
    GuestStatus,
    Nic,
    NodeState,
    PackageUpdate,
    Snapshot,
    TaskInfo,
    TaskRef,
    TaskStatus,
    TlsMode,
)
from core.ports import ConfigChange, NicAddress, NotificationMatcher, SecretCipher, WebhookTarget
from core.telemetry import Telemetry

LOG_PAGE = 500
BACKUP_MODES = ("snapshot", "suspend", "stop")


@dataclass
class _LogCursor:
    """What we have read of one task's log: where to continue, the last lines, the last percent."""

    next_start: int = 0
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    percent: float | None = None


class ProxmoxHypervisor:
    """One Proxmox VE cluster (see :class:`core.ports.Hypervisor`)."""

    def __init__(self, cluster_name: str, transport: ClusterTransport, *, cache_seconds: float = 5.0,
                 log_lines: int = 5) -> None:
        self.cluster_name = cluster_name
        self._api = transport
        self._log_lines = log_lines
        self._inventory = InventoryCache(self._fetch_inventory, max_age=cache_seconds)
        self._logs: OrderedDict[str, _LogCursor] = OrderedDict()
        self._logs_lock = threading.Lock()
        # calls made beside the caller's own (see status); a thread starts only once one is needed
        self._side_calls = ThreadPoolExecutor(max_workers=8, thread_name_prefix=f"pve-{cluster_name}")

    def close(self) -> None:
        self._side_calls.shutdown(wait=False, cancel_futures=True)
        self._api.close()

    # -- inventory and status ------------------------------------------------------------

    def inventory(self, *, refresh: bool = False) -> list[Guest]:
        return list(self._inventory.get(refresh=refresh).guests)

    def index(self, *, refresh: bool = False) -> GuestIndex:
        return self._inventory.get(refresh=refresh)

    def _fetch_inventory(self) -> GuestIndex:
        rows = self._api.call("GET", "/cluster/resources", type="vm")
        kinds = mapping.KINDS
        return GuestIndex.of_rows(self.cluster_name, (row for row in rows if row.get("type") in kinds),
                                  place=mapping.resource_place, name=mapping.resource_name,
                                  make=partial(mapping.guest_from_resource, self.cluster_name))

    def _invalidate(self) -> None:
        self._inventory.invalidate()

    def _pool_of(self, ref: GuestRef) -> str | None:
        guest = self.index().by_vmid(ref.vmid)
        return None if guest is None else guest.pool

    def status(self, ref: GuestRef) -> GuestStatus:
        base = self._guest_path(ref)
        # /pending lists every key of the config with its current value beside any pending one:
        # one call answers both. It does not depend on the state: both are asked at once, so a
        # status waits for one Proxmox answer, not two in a row
        pending_call = self._side_calls.submit(self._api.call, "GET", f"{base}/pending")
        try:
            current = self._api.call("GET", f"{base}/status/current")
        except BaseException:
            wait([pending_call])  # no call of a status outlives it; the first error is the one told
            raise
        pending = pending_call.result()
        guest = mapping.guest_from_status(ref, current, pool=self._pool_of(ref))
        return GuestStatus(
            guest=guest,
            ips=self._ips(ref, current),
            qmp_status=current.get("qmpstatus"),
            config=mapping.current_config(pending),
            pending=mapping.pending_changes(pending),
        )

    def identity(self, ref: GuestRef) -> GuestIdentity:
        return mapping.identity_from_config(ref.kind, self._api.call("GET", f"{self._guest_path(ref)}/config"))

    def guest_config(self, ref: GuestRef) -> dict[str, str]:
        return mapping.config_strings(self._api.call("GET", f"{self._guest_path(ref)}/config"))

    def _ips(self, ref: GuestRef, current: dict[str, Any]) -> tuple[str, ...]:
        if current.get("status") != "running":
            return ()
        base = self._guest_path(ref)
        try:
            if ref.kind == "qemu":
                if not current.get("agent"):
                    return ()
                answer = self._api.call("GET", f"{base}/agent/network-get-interfaces")
                return mapping.ips_from_interfaces(answer.get("result") or [])
            return mapping.ips_from_interfaces(self._api.call("GET", f"{base}/interfaces"))
        except BotError:
            # no agent running inside, or too old a container: the IPs are simply unknown
            return ()

    # -- power, create, change, delete ---------------------------------------------------

    def power(self, ref: GuestRef, action: str) -> TaskRef:
        if action not in mapping.POWER_ACTIONS:
            raise InvalidArguments(f"unknown power action {action!r}; use one of {', '.join(mapping.POWER_ACTIONS)}")
        if action == "reset" and ref.kind == "lxc":
            raise InvalidArguments("containers (lxc) have no reset in Proxmox; use reboot, or stop and start")
        upid = self._api.call("POST", f"{self._guest_path(ref)}/status/{action}")
        return self._task(ref.node, upid)

    def next_vmid(self) -> int:
        return int(self._api.call("GET", "/cluster/nextid"))

    def clone(
        self, template: GuestRef, *, newid: int, name: str, pool: str, full: bool = True,
        target_node: str | None = None,
    ) -> TaskRef:
        name_key = "name" if template.kind == "qemu" else "hostname"
        upid = self._api.call(
            "POST", f"{self._guest_path(template)}/clone",
            newid=newid, pool=pool, full=full, target=target_node, **{name_key: name},
        )
        self._invalidate()
        return self._task(template.node, upid)

    def configure(self, ref: GuestRef, change: ConfigChange) -> TaskRef:
        if change.empty:
            raise InvalidArguments("nothing to change")
        params: dict[str, Any] = {}
        if change.cores is not None:
            params["cores"] = change.cores
        if change.memory_mb is not None:
            params["memory"] = change.memory_mb
        if change.ipconfig is not None:
            mapping.check_ipconfig(change.ipconfig[1])
        needs_config = change.vlan is not None or (change.ipconfig is not None and ref.kind == "lxc")
        if needs_config:
            config = self._api.call("GET", f"{self._guest_path(ref)}/config")
            # the digest makes Proxmox refuse our change if someone else changed the config meanwhile
            params["digest"] = config.get("digest")
            nets: dict[int, str] = {}
            if change.vlan is not None:
                index, tag = change.vlan
                nets[index] = mapping.net_with_vlan(self._net(config, index), tag)
            if change.ipconfig is not None and ref.kind == "lxc":
                index, value = change.ipconfig
                nets[index] = mapping.lxc_net_with_ipconfig(nets.get(index) or self._net(config, index), value)
            params.update({f"net{i}": v for i, v in nets.items()})
        if change.ipconfig is not None and ref.kind == "qemu":
            params[f"ipconfig{change.ipconfig[0]}"] = change.ipconfig[1]
        if ref.kind == "qemu":
            upid = self._api.call("POST", f"{self._guest_path(ref)}/config", **params)
            return self._task(ref.node, upid)
        # containers have no asynchronous config call: the change is done when PUT returns
        self._api.call("PUT", f"{self._guest_path(ref)}/config", **params)
        return TaskRef(cluster=self.cluster_name, node=ref.node, upid=None)

    def _net(self, config: dict[str, Any], index: int) -> str:
        value = config.get(f"net{index}")
        if not value:
            raise InvalidArguments(f"the guest has no network interface net{index}")
        return str(value)

    # -- network -------------------------------------------------------------------------

    def nics(self, ref: GuestRef) -> list[Nic]:
        return mapping.nics_from_config(ref.kind, self._api.call("GET", f"{self._guest_path(ref)}/config"))

    def set_address(self, ref: GuestRef, change: NicAddress) -> TaskRef:
        base = self._guest_path(ref)
        config = self._api.call("GET", f"{base}/config")
        # the whole netN is sent back with its MAC: Proxmox gives a NIC sent without one a new MAC
        net = mapping.net_with_address(ref.kind, self._net(config, change.nic), bridge=change.bridge,
                                       vlan=change.vlan, address=change.address, gateway=change.gateway)
        # the digest makes Proxmox refuse our change if someone else changed the config meanwhile
        params: dict[str, Any] = {"digest": config.get("digest"), f"net{change.nic}": net}
        if change.dns:
            params["nameserver"] = " ".join(change.dns)
        if change.search_domain:
            params["searchdomain"] = change.search_domain
        if ref.kind == "qemu":
            if change.address is None:
                params["delete"] = f"ipconfig{change.nic}"
            else:
                params[f"ipconfig{change.nic}"] = mapping.ipconfig_value(change.address, change.gateway)
            return self._task(ref.node, self._api.call("POST", f"{base}/config", **params))
        self._api.call("PUT", f"{base}/config", **params)
        return TaskRef(cluster=self.cluster_name, node=ref.node, upid=None)

    def regenerate_cloudinit(self, ref: GuestRef) -> TaskRef:
        if ref.kind != "qemu":
            raise InvalidArguments("only qemu VMs have a cloud-init drive")
        self._api.call("PUT", f"{self._guest_path(ref)}/cloudinit")
        return TaskRef(cluster=self.cluster_name, node=ref.node, upid=None)

    def bridges(self, node: str) -> list[str]:
        rows = self._api.call("GET", f"/nodes/{node}/network", type="any_bridge")
        return sorted(str(row["iface"]) for row in rows if row.get("iface"))

    def resize_disk(self, ref: GuestRef, *, disk: str, size: str) -> TaskRef:
        mapping.check_disk_size(size)
        upid = self._api.call("PUT", f"{self._guest_path(ref)}/resize", disk=disk, size=size)
        return self._task(ref.node, upid)

    def delete(self, ref: GuestRef) -> TaskRef:
        upid = self._api.call(
            "DELETE", self._guest_path(ref), purge=True, **{"destroy-unreferenced-disks": True}
        )
        self._invalidate()
        return self._task(ref.node, upid)

    # -- snapshots -----------------------------------------------------------------------

    def snapshots(self, ref: GuestRef) -> list[Snapshot]:
        return mapping.snapshots_from_rows(self._api.call("GET", f"{self._guest_path(ref)}/snapshot"))

    def create_snapshot(self, ref: GuestRef, name: str, *, description: str = "", vmstate: bool = False) -> TaskRef:
        mapping.check_snapshot_name(name)
        params: dict[str, Any] = {"snapname": name, "description": description or None}
        if vmstate:
            if ref.kind != "qemu":
                raise InvalidArguments("containers (lxc) cannot keep their RAM in a snapshot")
            params["vmstate"] = True
        upid = self._api.call("POST", f"{self._guest_path(ref)}/snapshot", **params)
        return self._task(ref.node, upid)

    def rollback_snapshot(self, ref: GuestRef, name: str) -> TaskRef:
        mapping.check_snapshot_name(name)
        upid = self._api.call("POST", f"{self._guest_path(ref)}/snapshot/{name}/rollback")
        return self._task(ref.node, upid)

    def delete_snapshot(self, ref: GuestRef, name: str) -> TaskRef:
        mapping.check_snapshot_name(name)
        upid = self._api.call("DELETE", f"{self._guest_path(ref)}/snapshot/{name}")
        return self._task(ref.node, upid)

    # -- backups -------------------------------------------------------------------------

    def backup(self, ref: GuestRef, *, storage: str, mode: str = "snapshot", notes: str | None = None,
               protected: bool = False) -> TaskRef:
        if mode not in BACKUP_MODES:
            raise InvalidArguments(f"backup mode is one of {', '.join(BACKUP_MODES)}")
        answer = self._api.call(
            "POST", f"/nodes/{ref.node}/vzdump", vmid=str(ref.vmid), storage=storage, mode=mode, compress="zstd",
            protected=True if protected else None,
            **{"notes-template": mapping.notes_template(notes), "notification-mode": "notification-system"},
        )
        if not mapping.is_upid(answer):
            # vzdump answers OK without a task when the guest is not on the node asked: nothing was backed up
            raise Conflict(f"cluster {self.cluster_name}: guest {ref.vmid} is not on node {ref.node}; "
                           "nothing was backed up (it may have moved: try again)")
        return self._task(ref.node, answer)

    def backups(self, *, node: str, storage: str, vmid: int | None = None) -> list[Backup]:
        rows = self._api.call("GET", f"/nodes/{node}/storage/{storage}/content", content="backup", vmid=vmid)
        return mapping.backups_from_rows(rows, storage=storage, node=node)

    def _storage_rows(self) -> list[dict[str, Any]]:
        return [row for row in self._api.call("GET", "/cluster/resources", type="storage")
                if "backup" in str(row.get("content", "")).split(",")]

    def backup_storages(self, node: str) -> list[str]:
        return sorted(str(row["storage"]) for row in self._storage_rows() if row.get("node") == node)

    def backup_stores(self) -> list[BackupStore]:
        return sorted((BackupStore(storage=str(row["storage"]), node=str(row["node"]),
                                   shared=bool(int(row.get("shared") or 0)))
                       for row in self._storage_rows() if row.get("status", "available") == "available"),
                      key=lambda s: (s.storage, s.node))

    def _volume_path(self, node: str, storage: str, volid: str) -> str:
        # a volume id holds ':' and '/': it travels as one %-encoded path segment
        return f"/nodes/{node}/storage/{storage}/content/{quote(volid, safe='')}"

    def set_backup_protected(self, *, node: str, storage: str, volid: str, protected: bool) -> None:
        self._api.call("PUT", self._volume_path(node, storage, volid), protected=protected)

    def delete_backup(self, *, node: str, storage: str, volid: str) -> TaskRef:
        return self._task(node, self._api.call("DELETE", self._volume_path(node, storage, volid)))

    def restore(
        self, *, node: str, kind: str, vmid: int, archive: str, storage: str | None = None, force: bool = False,
        pool: str | None = None, unique: bool = False, name: str | None = None,
    ) -> TaskRef:
        if kind == "qemu":
            params: dict[str, Any] = {"vmid": vmid, "archive": archive, "name": name}
        elif kind == "lxc":
            params = {"vmid": vmid, "ostemplate": archive, "restore": True, "hostname": name}
        else:
            raise InvalidArguments("a guest is qemu or lxc")
        params.update(storage=storage, force=True if force else None, pool=pool, unique=True if unique else None)
        upid = self._api.call("POST", f"/nodes/{node}/{kind}", **params)
        self._invalidate()
        return self._task(node, upid)

    def backup_jobs(self) -> list[BackupJob]:
        return [mapping.backup_job_from_row(row) for row in self._api.call("GET", "/cluster/backup")]

    def save_backup_job(self, job_id: str, *, schedule: str | None, options: dict[str, str], create: bool,
                        delete: list[str] | None = None) -> None:
        mapping.check_job_id(job_id)
        if create:
            self._api.call("POST", "/cluster/backup", id=job_id, schedule=schedule, **options)
        else:
            self._api.call("PUT", f"/cluster/backup/{job_id}", schedule=schedule,
                           delete=",".join(delete) if delete else None, **options)

    def delete_backup_job(self, job_id: str) -> None:
        mapping.check_job_id(job_id)
        self._api.call("DELETE", f"/cluster/backup/{job_id}")

    def analyze_schedule(self, schedule: str, *, iterations: int = 3) -> list[int]:
        rows = self._api.call("GET", "/cluster/jobs/schedule-analyze", schedule=schedule, iterations=iterations)
        return [int(row["timestamp"]) for row in rows]

    def run_backup(self, *, node: str, options: dict[str, str]) -> TaskRef | None:
        answer = self._api.call("POST", f"/nodes/{node}/vzdump", **options)
        return self._task(node, answer) if mapping.is_upid(answer) else None

    def tasks(self, *, node: str, typefilter: str, since: int | None = None, limit: int = 500, start: int = 0,
              source: str = "archive") -> list[TaskInfo]:
        rows = self._api.call("GET", f"/nodes/{node}/tasks", typefilter=typefilter, since=since, limit=limit,
                              start=start or None, source=None if source == "archive" else source)
        return [mapping.task_from_row(row, node=node) for row in rows]

    def task_log(self, *, node: str, upid: str, limit: int = 5000) -> list[str]:
        rows = self._api.call("GET", f"/nodes/{node}/tasks/{upid}/log", start=0, limit=limit)
        return [self._api.redact(str(row.get("t", "")), keep_ips=True) for row in rows]

    # -- tasks ---------------------------------------------------------------------------

    def task_status(self, task: TaskRef) -> TaskStatus:
        if task.upid is None:
            return TaskStatus(running=False, exitstatus="OK")
        base = f"/nodes/{task.node}/tasks/{task.upid}"
        status = self._api.call("GET", f"{base}/status")
        cursor = self._read_log(base, task.upid)
        running = status.get("status") == "running"
        exitstatus = None if running else self._api.redact(str(status.get("exitstatus") or "unknown"), keep_ips=True)
        if not running:
            with self._logs_lock:
                self._logs.pop(task.upid, None)
        tail = tuple(self._api.redact(line, keep_ips=True) for line in list(cursor.tail)[-self._log_lines :])
        ended = TaskStatus(running=running, exitstatus=exitstatus, percent=cursor.percent, log_tail=tail)
        # a task that did its work ends at 100 %, whatever its last percent line said
        return replace(ended, percent=100.0) if ended.ok and cursor.percent is not None else ended

    def _read_log(self, base: str, upid: str) -> _LogCursor:
        with self._logs_lock:
            cursor = self._logs.pop(upid, None) or _LogCursor()
            self._logs[upid] = cursor
            while len(self._logs) > 256:  # forget tasks nobody follows any more
                self._logs.popitem(last=False)
        while True:
            rows = self._api.call("GET", f"{base}/log", start=cursor.next_start, limit=LOG_PAGE)
            for row in rows:
                line = str(row.get("t", ""))
                cursor.tail.append(line)
                percent = mapping.percent_in(line)
                if percent is not None:
                    cursor.percent = percent
            cursor.next_start += len(rows)
            if len(rows) < LOG_PAGE:
                return cursor

    def cancel_task(self, task: TaskRef) -> None:
        if task.upid is not None:
            self._api.call("DELETE", f"/nodes/{task.node}/tasks/{task.upid}")

    # -- helpers -------------------------------------------------------------------------

    # -- cluster and package updates ----------------------------------------------------------

    def cluster_state(self) -> ClusterState:
        rows = self._api.call("GET", "/cluster/status")
        head = next((r for r in rows if r.get("type") == "cluster"), None)
        nodes = tuple(sorted((NodeState(name=str(r["name"]), online=bool(int(r.get("online") or 0)))
                              for r in rows if r.get("type") == "node"), key=lambda n: n.name))
        # a standalone node has no cluster row: it has quorum with itself
        quorate = True if head is None else bool(int(head.get("quorate") or 0))
        return ClusterState(quorate=quorate, nodes=nodes)

    def apt_updates(self, node: str) -> list[PackageUpdate]:
        rows = self._api.call("GET", f"/nodes/{quote(node, safe='')}/apt/update")
        return [PackageUpdate(package=str(r["Package"]), version=str(r.get("Version") or ""),
                              old_version=str(r["OldVersion"]) if r.get("OldVersion") else None,
                              origin=str(r.get("Origin") or ""), title=str(r.get("Title") or ""))
                for r in rows if r.get("Package")]

    def refresh_updates(self, node: str) -> TaskRef:
        upid = self._api.call("POST", f"/nodes/{quote(node, safe='')}/apt/update", notify=0, quiet=1)
        return self._task(node, upid)

    def proxmox_version(self, node: str) -> str | None:
        rows = self._api.call("GET", f"/nodes/{quote(node, safe='')}/apt/versions")
        for row in rows:
            if row.get("Package") == "pve-manager":
                return str(row.get("ManagerVersion") or row.get("Version") or "") or None
        return None

    # -- notification targets (pvebot admin events) ---------------------------------------

    def webhooks(self) -> list[WebhookTarget]:
        rows = self._api.call("GET", "/cluster/notifications/endpoints/webhook")
        return [WebhookTarget(name=str(r["name"]), url=str(r.get("url") or ""), comment=str(r.get("comment") or ""),
                              secret_names=tuple(_names(r.get("secret") or [])))
                for r in rows]

    def save_webhook(self, name: str, *, url: str, headers: dict[str, str], body: str, secrets: dict[str, str],
                     comment: str, create: bool) -> None:
        # header and secret values travel base64 inside "name=…,value=…" property strings; lists go as
        # repeated form fields (requests' encoding of a list)
        params: dict[str, Any] = {
            "url": url, "method": "post", "comment": comment, "body": _b64(body),
            "header": [f"name={k},value={_b64(v)}" for k, v in headers.items()],
            "secret": [f"name={k},value={_b64(v)}" for k, v in secrets.items()],
        }
        if create:
            self._api.call("POST", "/cluster/notifications/endpoints/webhook", name=name, **params)
        else:
            self._api.call("PUT", f"/cluster/notifications/endpoints/webhook/{name}", **params)

    def delete_webhook(self, name: str) -> None:
        self._api.call("DELETE", f"/cluster/notifications/endpoints/webhook/{name}")

    def matchers(self) -> list[NotificationMatcher]:
        rows = self._api.call("GET", "/cluster/notifications/matchers")
        return [NotificationMatcher(name=str(r["name"]), targets=tuple(r.get("target") or ()),
                                    match_fields=tuple(r.get("match-field") or ()), comment=str(r.get("comment") or ""))
                for r in rows]

    def save_matcher(self, name: str, *, targets: list[str], match_fields: list[str], comment: str,
                     create: bool) -> None:
        params = {"target": targets, "match-field": match_fields, "comment": comment, "mode": "all"}
        if create:
            self._api.call("POST", "/cluster/notifications/matchers", name=name, **params)
        else:
            self._api.call("PUT", f"/cluster/notifications/matchers/{name}", **params)

    def delete_matcher(self, name: str) -> None:
        self._api.call("DELETE", f"/cluster/notifications/matchers/{name}")

    def test_target(self, name: str) -> None:
        self._api.call("POST", f"/cluster/notifications/targets/{name}/test")

    def _guest_path(self, ref: GuestRef) -> str:
        if ref.kind not in mapping.KINDS:
            raise InvalidArguments("a guest is qemu or lxc")
        return f"/nodes/{ref.node}/{ref.kind}/{int(ref.vmid)}"

    def _task(self, node: str, upid: Any) -> TaskRef:
        return TaskRef(cluster=self.cluster_name, node=node, upid=str(upid) if mapping.is_upid(upid) else None)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _names(items: list[Any]) -> list[str]:
    """Secret names out of ``name=<n>`` property strings (the API never returns the values)."""
    names = []
    for item in items:
        parts = dict(p.split("=", 1) for p in str(item).split(",") if "=" in p)
        if parts.get("name"):
            names.append(parts["name"])
    return names


class ProxmoxHypervisors:
    """:class:`core.ports.Hypervisors`: one cached :class:`ProxmoxHypervisor` per configured cluster."""

    def __init__(
        self, cipher: SecretCipher, *, timeout: float = 10, cache_seconds: float = 5, read_retries: int = 2,
        retry_backoff: float = 0.2, log_lines: int = 5, telemetry: Telemetry | None = None,
    ) -> None:
        self._cipher = cipher
        self._telemetry = telemetry
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._read_retries = read_retries
        self._retry_backoff = retry_backoff
        self._log_lines = log_lines
        # per cluster name: the settings it was built for, and the hypervisor
        self._cache: dict[str, tuple[tuple[Any, ...], ProxmoxHypervisor]] = {}
        self._lock = threading.Lock()

    def for_cluster(self, cluster: Cluster) -> ProxmoxHypervisor:
        # TLS settings and the stored secret are in the key too: changing them must not reuse old sessions
        key = (tuple(cluster.api_urls), cluster.token_id, TlsMode(cluster.tls_mode), cluster.tls_value,
               cluster.token_secret_encrypted)
        with self._lock:
            kept = self._cache.get(cluster.name)
            found = kept[1] if kept is not None and kept[0] == key else None
            if found is None:
                # a cluster whose settings changed (a rotated token, a new URL) replaces its old hypervisor,
                # which is not closed: a job may still be following a task through it, and it goes (its
                # inventory and connections with it) when the last holder lets it go
                transport = ClusterTransport(
                    cluster=cluster.name, urls=list(cluster.api_urls), token_id=cluster.token_id,
                    secret=self._cipher.decrypt(cluster.token_secret_encrypted), tls_mode=TlsMode(cluster.tls_mode),
                    tls_value=cluster.tls_value, timeout=self._timeout, read_retries=self._read_retries,
                    retry_backoff=self._retry_backoff, telemetry=self._telemetry,
                )
                found = ProxmoxHypervisor(cluster.name, transport, cache_seconds=self._cache_seconds,
                                          log_lines=self._log_lines)
                self._cache[cluster.name] = (key, found)
            return found

    def close(self) -> None:
        with self._lock:
            for _key, hypervisor in self._cache.values():
                hypervisor.close()
            self._cache.clear()
