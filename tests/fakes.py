"""Protocol-implementing test doubles (no MagicMock): an in-memory hypervisor, queue, notifier, directory and clock."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from core.chat import ConversationRef, MessageRef, Reply
from core.errors import Conflict, ExternalSystemError, InvalidArguments, NotFound
from core.guest_index import GuestIndex
from core.model import (
    Backup,
    BackupJob,
    BackupStore,
    Cluster,
    Guest,
    GuestIdentity,
    GuestRef,
    GuestStatus,
    Nic,
    Snapshot,
    TaskInfo,
    TaskRef,
    TaskStatus,
)
from core.ports import ConfigChange, NicAddress


class FakeClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 21, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **kwargs: float) -> None:
        self.current += timedelta(**kwargs)

    def monotonic(self) -> float:
        return (self.current - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds()

    def sleep(self, seconds: float) -> None:
        # a job that waits for its Proxmox task moves this clock on, as the waiting would
        self.advance(seconds=seconds)


@dataclass
class FakeHypervisor:
    """One cluster in memory; every task finishes at once, OK unless ``fail_next`` says otherwise."""

    cluster_name: str
    guests: dict[int, Guest] = field(default_factory=dict)
    snaps: dict[int, list[Snapshot]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    fail_next: str | None = None
    # set to a message to make the cluster unreachable
    down: str | None = None
    backup_files: dict[int, list[Backup]] = field(default_factory=dict)
    # each guest's creation number: adding or cloning into a VMID makes a new guest there
    births: dict[int, int] = field(default_factory=dict)
    configs: dict[int, dict[str, str]] = field(default_factory=dict)
    # vmid -> its NICs (a guest not listed has one untagged NIC on vmbr0 without an address)
    nic_table: dict[int, list[Nic]] = field(default_factory=dict)
    # backup jobs: id -> (schedule, options)
    jobs: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    # when each guest was created (the fake's clock): a qemu config's meta ctime
    born_at: dict[int, int] = field(default_factory=dict)
    # finished tasks, oldest first, as a node's task history lists them
    history: list[TaskInfo] = field(default_factory=list)
    now_ts: int = 1_700_000_000
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _births: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, vmid: int, name: str, *, pool: str | None, status: str = "running", kind: str = "qemu",
            node: str = "pve1", template: bool = False, cores: int = 2, memory_gb: int = 2, disk_gb: int = 32,
            ostype: str | None = None) -> Guest:
        guest = Guest(cluster=self.cluster_name, vmid=vmid, name=name, kind=kind, node=node, status=status, pool=pool,
                      template=template, maxcpu=cores, maxmem=memory_gb * 1024**3, maxdisk=disk_gb * 1024**3)
        self.guests[vmid] = guest
        self.births[vmid] = next(self._births)
        self.configs[vmid] = {"cores": str(cores), "ostype": ostype or ("l26" if kind == "qemu" else "debian")}
        self.born_at[vmid] = self.tick()
        return guest

    def _task(self, ref: GuestRef, what: str) -> TaskRef:
        with self._lock:
            n = next(self._ids)
        self.calls.append((what, ref.vmid))
        upid = f"UPID:{ref.node}:{n:08X}:00000000:00000000:{what}:{ref.vmid}:x@pve!t:"
        return TaskRef(cluster=self.cluster_name, node=ref.node, upid=upid)

    def _get(self, ref: GuestRef) -> Guest:
        guest = self.guests.get(ref.vmid)
        if guest is None:
            raise NotFound(f"VM {ref.vmid} not found")
        return guest

    def identity(self, ref: GuestRef) -> GuestIdentity:
        guest = self._get(ref)
        self.calls.append(("identity", ref.vmid))
        return GuestIdentity(uuid=f"fake-{self.cluster_name}-{ref.vmid}-{self.births[ref.vmid]}", name=guest.name,
                             created=self.born_at.get(ref.vmid))

    def inventory(self, *, refresh: bool = False) -> list[Guest]:
        self.calls.append(("inventory", refresh))
        if self.down:
            raise ExternalSystemError(self.down)
        return list(self.guests.values())

    def index(self, *, refresh: bool = False) -> GuestIndex:
        # no cache to share here: every call sees the guests as they are now
        return GuestIndex.build(self.cluster_name, self.inventory(refresh=refresh))

    def status(self, ref: GuestRef) -> GuestStatus:
        guest = self._get(ref)
        return GuestStatus(guest=guest, ips=("10.0.0.5",), config={"scsi0": f"local-lvm:vm-{ref.vmid}-disk-0,size=32G"})

    def guest_config(self, ref: GuestRef) -> dict[str, str]:
        self.calls.append(("config", ref.vmid))
        if self.down:
            raise ExternalSystemError(self.down)
        self._get(ref)
        return dict(self.configs.get(ref.vmid, {}))

    def power(self, ref: GuestRef, action: str) -> TaskRef:
        guest = self._get(ref)
        if action == "reset" and guest.kind == "lxc":
            raise InvalidArguments("containers have no reset")
        new = {"start": "running", "resume": "running", "reboot": "running", "reset": "running",
               "stop": "stopped", "shutdown": "stopped", "suspend": "paused"}[action]
        self.guests[ref.vmid] = replace(guest, status=new)
        return self._task(ref, f"qm{action}")

    def next_vmid(self) -> int:
        return max([99, *self.guests]) + 1

    def clone(self, template: GuestRef, *, newid: int, name: str, pool: str, full: bool = True,
              target_node: str | None = None) -> TaskRef:
        tpl = self._get(template)
        self.guests[newid] = replace(tpl, vmid=newid, name=name, pool=pool, template=False, status="stopped")
        self.births[newid] = next(self._births)
        self.born_at[newid] = self.tick()
        return self._task(template, "qmclone")

    def configure(self, ref: GuestRef, change: ConfigChange) -> TaskRef:
        guest = self._get(ref)
        if change.cores:
            guest = replace(guest, maxcpu=change.cores)
        if change.memory_mb:
            guest = replace(guest, maxmem=change.memory_mb * 1024**2)
        self.guests[ref.vmid] = guest
        return TaskRef(cluster=self.cluster_name, node=ref.node, upid=None)

    def resize_disk(self, ref: GuestRef, *, disk: str, size: str) -> TaskRef:
        self._get(ref)
        return TaskRef(cluster=self.cluster_name, node=ref.node, upid=None)

    def nics(self, ref: GuestRef) -> list[Nic]:
        self._get(ref)
        return list(self.nic_table.get(ref.vmid, [Nic(index=0, bridge="vmbr0", vlan=None)]))

    def set_address(self, ref: GuestRef, change: NicAddress) -> TaskRef:
        nics = {n.index: n for n in self.nics(ref)}
        old = nics[change.nic]
        nics[change.nic] = Nic(index=change.nic, bridge=change.bridge or old.bridge,
                               vlan=change.vlan if change.address else old.vlan, mac=old.mac, address=change.address)
        self.nic_table[ref.vmid] = sorted(nics.values(), key=lambda n: n.index)
        return self._task(ref, "qmconfig")

    def regenerate_cloudinit(self, ref: GuestRef) -> TaskRef:
        self._get(ref)
        return TaskRef(cluster=self.cluster_name, node=ref.node, upid=None)

    def bridges(self, node: str) -> list[str]:
        return ["vmbr0"]

    def delete(self, ref: GuestRef) -> TaskRef:
        guest = self._get(ref)
        if guest.status == "running":
            raise Conflict(f"VM {ref.vmid} is running - destroy failed")
        task = self._task(ref, "qmdestroy")
        del self.guests[ref.vmid]
        return task

    def snapshots(self, ref: GuestRef) -> list[Snapshot]:
        self._get(ref)
        return list(self.snaps.get(ref.vmid, []))

    def create_snapshot(self, ref: GuestRef, name: str, *, description: str = "", vmstate: bool = False) -> TaskRef:
        self._get(ref)
        existing = self.snaps.setdefault(ref.vmid, [])
        existing.append(Snapshot(name=name, description=description, parent=existing[-1].name if existing else None))
        return self._task(ref, "qmsnapshot")

    def rollback_snapshot(self, ref: GuestRef, name: str) -> TaskRef:
        self._get(ref)
        return self._task(ref, "qmrollback")

    def delete_snapshot(self, ref: GuestRef, name: str) -> TaskRef:
        self.snaps[ref.vmid] = [s for s in self.snaps.get(ref.vmid, []) if s.name != name]
        return self._task(ref, "qmdelsnapshot")

    def tick(self) -> int:
        """The fake's own clock for creation and backup times: each event a second after the last."""
        self.now_ts += 1
        return self.now_ts

    def backup(self, ref: GuestRef, *, storage: str, mode: str = "snapshot", notes: str | None = None,
               protected: bool = False) -> TaskRef:
        guest = self._get(ref)
        ctime = self.tick()
        volid = f"{storage}:backup/vzdump-{guest.kind}-{ref.vmid}-{ctime}.vma.zst"
        self.backup_files.setdefault(ref.vmid, []).append(Backup(
            volid=volid, storage=storage, vmid=ref.vmid, size=1024**3, ctime=ctime, notes=notes or guest.name,
            protected=protected, kind=guest.kind, node=ref.node))
        return self._task(ref, "vzdump")

    def backups(self, *, node: str, storage: str, vmid: int | None = None) -> list[Backup]:
        return [replace(b, node=node) for v, found in self.backup_files.items() if vmid in (None, v) for b in found
                if b.storage == storage]

    def backup_storages(self, node: str) -> list[str]:
        return ["local"]

    def backup_stores(self) -> list[BackupStore]:
        return [BackupStore(storage="local", node="pve1", shared=False)]

    def _backup(self, volid: str) -> Backup:
        for found in self.backup_files.values():
            for b in found:
                if b.volid == volid:
                    return b
        raise NotFound(f"backup '{volid}' does not exist")

    def set_backup_protected(self, *, node: str, storage: str, volid: str, protected: bool) -> None:
        b = self._backup(volid)
        self.backup_files[b.vmid] = [replace(x, protected=protected) if x.volid == volid else x
                                     for x in self.backup_files[b.vmid]]

    def delete_backup(self, *, node: str, storage: str, volid: str) -> TaskRef:
        b = self._backup(volid)
        if b.protected:
            raise Conflict(f"backup '{volid}' is protected")
        self.backup_files[b.vmid] = [x for x in self.backup_files[b.vmid] if x.volid != volid]
        return TaskRef(cluster=self.cluster_name, node=node, upid=None)

    def restore(self, *, node: str, kind: str, vmid: int, archive: str, storage: str | None = None,
                force: bool = False, pool: str | None = None, unique: bool = False,
                name: str | None = None) -> TaskRef:
        self.calls.append(("restore", (vmid, archive)))
        return TaskRef(cluster=self.cluster_name, node=node, upid="UPID:x")

    def backup_jobs(self) -> list[BackupJob]:
        # as the gateway maps a listing: enabled is the job's own, not a vzdump option
        return [BackupJob(id=i, schedule=sched, options={k: v for k, v in o.items() if k != "enabled"},
                          enabled=o.get("enabled", "1") == "1") for i, (sched, o) in sorted(self.jobs.items())]

    def save_backup_job(self, job_id: str, *, schedule: str | None, options: dict[str, str], create: bool,
                        delete: list[str] | None = None) -> None:
        if create and job_id in self.jobs:
            raise Conflict(f"a backup job '{job_id}' exists already")
        if schedule is None and create:
            raise InvalidArguments("schedule: property is missing")
        merged = {**({} if create else self.jobs[job_id][1]), **options}
        for key in delete or ():
            merged.pop(key, None)
        self.jobs[job_id] = (schedule if schedule is not None else self.jobs[job_id][0], merged)

    def delete_backup_job(self, job_id: str) -> None:
        if self.jobs.pop(job_id, None) is None:
            raise NotFound("that backup schedule does not exist in Proxmox")

    def analyze_schedule(self, schedule: str, *, iterations: int = 3) -> list[int]:
        if "moon" in schedule:
            raise InvalidArguments("schedule: invalid calendar event")
        return [1_800_000_000 + 86400 * i for i in range(iterations)]

    def run_backup(self, *, node: str, options: dict[str, str]) -> TaskRef | None:
        self.calls.append(("run_backup", (node, dict(options))))
        return None

    def tasks(self, *, node: str, typefilter: str, since: int | None = None, limit: int = 500, start: int = 0,
              source: str = "archive") -> list[TaskInfo]:
        found = [t for t in reversed(self.history) if t.node == node and t.type == typefilter
                 and (since is None or t.starttime >= since)]
        return found[start:start + limit]

    def task_log(self, *, node: str, upid: str, limit: int = 5000) -> list[str]:
        return []

    def task_status(self, task: TaskRef) -> TaskStatus:
        if self.fail_next:
            message, self.fail_next = self.fail_next, None
            return TaskStatus(running=False, exitstatus=message, log_tail=(message,))
        return TaskStatus(running=False, exitstatus="OK", percent=100.0, log_tail=("TASK OK",))

    def cancel_task(self, task: TaskRef) -> None:
        self.calls.append(("cancel", task.upid))


class FakeHypervisors:
    def __init__(self) -> None:
        self.clusters: dict[str, FakeHypervisor] = {}

    def cluster(self, name: str) -> FakeHypervisor:
        return self.clusters.setdefault(name, FakeHypervisor(cluster_name=name))

    def for_cluster(self, cluster: Cluster) -> FakeHypervisor:
        return self.cluster(cluster.name)


class FakeQueue:
    """Records enqueued jobs; ``run_all`` executes them in this thread through the given runner."""

    owner: str | None = None  # a shared queue, as Redis is

    def __init__(self) -> None:
        self.enqueued: list[tuple[str, str, dict[str, Any]]] = []
        self.cancelled: list[str] = []

    def enqueue(self, function: str, *, job_id: str, kwargs: dict[str, Any], timeout: int) -> None:
        self.enqueued.append((function, job_id, kwargs))

    def cancel(self, job_id: str) -> bool:
        self.cancelled.append(job_id)
        return True

    def holds(self, job_id: str) -> bool:
        return any(j == job_id for _, j, _ in self.enqueued) and job_id not in self.cancelled


class FakeNotifier:
    def __init__(self) -> None:
        self.messages: dict[str, list[Reply]] = {}
        self.conversations: dict[str, ConversationRef] = {}
        self._ids = itertools.count(1)

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        message_id = f"m{next(self._ids)}"
        self.messages[message_id] = [reply]
        self.conversations[message_id] = conversation
        return MessageRef(conversation=conversation, message_id=message_id)

    def update(self, message: MessageRef, reply: Reply) -> None:
        self.messages.setdefault(message.message_id, []).append(reply)


@dataclass
class FakeMember:
    email: str | None
    name: str | None = None
    groups: frozenset[str] = frozenset()


class FakeDirectory:
    """:class:`core.ports.Directory` from a dict of members keyed by (platform, workspace, user); records each call."""

    def __init__(self) -> None:
        self.members: dict[tuple[str, str, str], FakeMember] = {}
        self.calls: list[tuple[str, str]] = []

    def add(self, platform: str, workspace_id: str, user_id: str, *, email: str | None, name: str | None = None,
            groups: tuple[str, ...] = ()) -> None:
        self.members[(platform, workspace_id, user_id)] = FakeMember(email, name, frozenset(groups))

    def _member(self, what: str, key: tuple[str, str, str]) -> FakeMember | None:
        self.calls.append((what, key[2]))
        return self.members.get(key)

    def email_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        member = self._member("email", (platform, workspace_id, user_id))
        return None if member is None else member.email

    def name_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        member = self._member("name", (platform, workspace_id, user_id))
        return None if member is None else member.name

    def groups_of(self, platform: str, workspace_id: str, user_id: str) -> frozenset[str]:
        member = self._member("groups", (platform, workspace_id, user_id))
        return frozenset() if member is None else member.groups
