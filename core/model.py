"""Domain entities.

Plain dataclasses: the SQL adapter maps them imperatively, the fakes keep them in dicts.
Entities that live in Proxmox (guests, tasks, snapshots, backups) are frozen value objects:
pvebot never stores them, it asks the hypervisor.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class Role(enum.StrEnum):
    SUPER_ADMIN = "super_admin"
    COMPANY_ADMIN = "company_admin"
    SALESPERSON = "salesperson"
    USER = "user"


class Platform(enum.StrEnum):
    SLACK = "slack"
    TEAMS = "teams"
    SHELL = "shell"


class TlsMode(enum.StrEnum):
    CA_FILE = "ca_file"
    FINGERPRINT = "fingerprint"
    INSECURE = "insecure"


@dataclass(eq=False)
class Company:
    slug: str
    name: str
    email_domains: list[str] = field(default_factory=list)
    quotas: dict[str, int] = field(default_factory=dict)
    # {"required_for": [added], "exempt": [removed defaults], "expires_minutes": int, "approvers_channel": str};
    # the defaults come from the operation catalog (core.services.catalog)
    approval_policy: dict[str, Any] = field(default_factory=dict)
    # Azure AD groups whose members become users of this company: [{"group_id": ..., "role": ...}]
    directory_groups: list[dict[str, str]] = field(default_factory=list)
    # {"storages": [...], "max_schedules": int, "max_age_hours": int, "default_retention": {"keep-daily": 7, ...}}
    backup_policy: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    @property
    def approval_expiry_minutes(self) -> int:
        return int(self.approval_policy.get("expires_minutes", 30))


@dataclass(eq=False)
class User:
    email: str
    name: str
    role: Role
    company_id: int | None = None
    active: bool = True
    # Companies a salesperson may read, besides the home company.
    assigned_companies: list[Company] = field(default_factory=list)
    id: int | None = None

    @property
    def assigned_company_ids(self) -> frozenset[int]:
        return frozenset(c.id for c in self.assigned_companies if c.id is not None)


@dataclass(eq=False)
class ChatIdentity:
    platform: str
    workspace_id: str
    platform_user_id: str
    user_id: int
    id: int | None = None


@dataclass(eq=False)
class KnownChannel:
    """The latest reference to a channel or chat the bot was written to in, per (platform, workspace, channel).

    No company owns it: a company's cards go only to a channel its provisioning names.
    ``reference`` is :meth:`core.chat.ChannelRef.to_dict`.
    """

    platform: str
    workspace_id: str
    channel_id: str
    reference: dict[str, Any]
    updated_at: datetime
    id: int | None = None


@dataclass(eq=False)
class Cluster:
    name: str
    api_urls: list[str]
    token_id: str
    token_secret_encrypted: str
    tls_mode: TlsMode = TlsMode.FINGERPRINT
    # the CA file path or the SHA-256 fingerprint, depending on tls_mode
    tls_value: str | None = None
    # the environment variable the secret was read from at provisioning, for export
    token_secret_env: str | None = None
    shared_templates: list[int] = field(default_factory=list)
    id: int | None = None

    def __repr__(self) -> str:  # never show the (encrypted) secret
        return f"Cluster(name={self.name!r}, api_urls={self.api_urls!r}, token_id={self.token_id!r})"


@dataclass(eq=False)
class PoolBinding:
    company_id: int
    cluster_id: int
    pool: str
    id: int | None = None


@dataclass(eq=False)
class AuditEvent:
    at: datetime
    action: str
    actor: str
    company_id: int | None = None
    target: str = ""
    outcome: str = "ok"
    detail: dict[str, Any] = field(default_factory=dict)
    id: int | None = None


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # Proxmox stopped answering while its task ran: it may well have succeeded, and nobody can say
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.UNKNOWN)



@dataclass(frozen=True)
class JobBrief:
    """What a guest's status tells of the last job on it: three columns, not a whole job record."""

    id: str
    summary: str
    state: JobState


@dataclass(frozen=True)
class JobRoute:
    """Where a job reports: its conversation (with the thread it posts in) and its own message, once posted."""

    conversation: dict[str, Any]
    message_ref: dict[str, Any]

@dataclass(eq=False)
class Job:
    """A Proxmox operation requested from chat; its record outlives workers and restarts."""

    id: str
    request_id: str
    company_id: int
    actor_user_id: int
    action: str
    # what the job acts on, as primitives: {"cluster": ..., "vmid": ..., "node": ..., "kind": ...}
    target: dict[str, Any]
    params: dict[str, Any]
    state: JobState
    created_at: datetime
    conversation: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    upid: str | None = None
    progress: str = ""
    result: str = ""
    approval_id: str | None = None
    # where the live progress message is, once posted (a MessageRef as a dict)
    message_ref: dict[str, Any] = field(default_factory=dict)
    # set by "job cancel" while the job runs; the runner stops the Proxmox task
    cancel_requested: bool = False
    # the in-process queue (one per pvebot process) it was handed to; None on a shared Redis queue,
    # where any worker may take it. Lets a starting process fail only what a dead process held.
    queue_owner: str | None = None


class ApprovalState(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    EXECUTED = "executed"
    FAILED = "failed"
    # approved, and its job's outcome could not be learnt from Proxmox
    UNKNOWN = "unknown"


@dataclass(eq=False)
class ApprovalRequest:
    id: str
    company_id: int
    requester_user_id: int
    action: str
    target: dict[str, Any]
    params: dict[str, Any]
    preview: dict[str, Any]
    state: ApprovalState
    created_at: datetime
    expires_at: datetime
    reason: str = ""
    conversation: dict[str, Any] = field(default_factory=dict)
    decided_by_user_id: int | None = None
    decided_at: datetime | None = None
    decision_note: str = ""
    job_id: str | None = None
    # the chat delivery that asked: a re-delivery finds this request instead of making another
    request_id: str = ""
    # the approval card as posted, so that the decision can replace its buttons
    message_ref: dict[str, Any] = field(default_factory=dict)
    # copies of the card elsewhere (the approvers channel), edited with it
    copies: list[dict[str, Any]] = field(default_factory=list)


@dataclass(eq=False)
class IpRange:
    """A company's address range on one cluster, and how a NIC reaches it (a bridge and VLAN, or an SDN vnet).

    Ranges change only through provisioning. ``reserved`` holds single addresses and ``first-last`` blocks
    that are never handed out (the gateway is never handed out either).
    """

    company_id: int
    cluster_id: int
    name: str
    cidr: str
    gateway: str | None = None
    vlan: int | None = None
    bridge: str | None = None
    vnet: str | None = None
    dns: list[str] = field(default_factory=list)
    search_domain: str | None = None
    reserved: list[str] = field(default_factory=list)
    id: int | None = None

    @property
    def segment(self) -> str:
        """Where its guests sit on the wire: ``vmbr0 VLAN 120``, ``vmbr0 untagged`` or ``vnet acmenet``."""
        if self.vnet:
            return f"vnet {self.vnet}"
        return f"{self.bridge} VLAN {self.vlan}" if self.vlan is not None else f"{self.bridge} untagged"


@dataclass(eq=False)
class IpAssignment:
    """An address of a range held by one NIC of one guest (``vmid`` None: held for a guest being created)."""

    range_id: int
    company_id: int
    address: str
    # the address as an integer: the unique key with ``range_id``, and what allocation searches
    number: int
    cluster_id: int
    vmid: int | None
    nic: int
    assigned_by: str
    assigned_at: datetime
    id: int | None = None


# ---- Things that live in Proxmox -------------------------------------------------------


@dataclass(frozen=True)
class GuestRef:
    """Enough to address one guest: the cluster, its node, qemu|lxc and the VMID."""

    cluster: str
    node: str
    kind: str
    vmid: int


@dataclass(frozen=True)
class Guest:
    """One row of ``/cluster/resources?type=vm``."""

    cluster: str
    vmid: int
    name: str
    kind: str  # "qemu" | "lxc"
    node: str
    status: str  # "running" | "stopped" | "paused" | "suspended" | ...
    pool: str | None = None
    template: bool = False
    maxcpu: int = 0
    cpu: float = 0.0
    maxmem: int = 0
    mem: int = 0
    maxdisk: int = 0
    disk: int = 0
    uptime: int = 0
    tags: tuple[str, ...] = ()
    lock: str | None = None

    @property
    def ref(self) -> GuestRef:
        return GuestRef(cluster=self.cluster, node=self.node, kind=self.kind, vmid=self.vmid)


@dataclass(frozen=True)
class GuestIdentity:
    """What tells one guest from another that later took the same VMID.

    Proxmox hands the lowest free VMID to the next guest created, so a VMID names a slot, not a
    machine. These witnesses are written when a guest is created (or cloned) and survive
    reconfiguration: for qemu the SMBIOS uuid and the creation time in ``meta``; for lxc the NICs'
    MAC addresses. The name stands in only when Proxmox gave nothing better.
    """

    uuid: str | None = None
    created: int | None = None
    macs: frozenset[str] = frozenset()
    name: str | None = None

    @property
    def strong(self) -> bool:
        return self.uuid is not None or self.created is not None or bool(self.macs)

    def same_guest(self, current: GuestIdentity) -> bool:
        """Whether ``current`` (read now) is the guest this identity was recorded from.

        Every witness recorded must agree; a witness that has vanished counts as a disagreement,
        since "cannot confirm" must never be taken for "the same". MACs agree when one is shared,
        so adding or removing a NIC is a change of the same container, not a new one.
        """
        if not self.strong:
            return self.name is not None and self.name == current.name
        if self.uuid is not None and self.uuid != current.uuid:
            return False
        if self.created is not None and self.created != current.created:
            return False
        return not self.macs or bool(self.macs & current.macs)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.uuid is not None:
            data["uuid"] = self.uuid
        if self.created is not None:
            data["created"] = self.created
        if self.macs:
            data["macs"] = sorted(self.macs)
        if self.name is not None:
            data["name"] = self.name
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GuestIdentity:
        created = data.get("created")
        return cls(uuid=data.get("uuid"), created=None if created is None else int(created),
                   macs=frozenset(data.get("macs") or ()), name=data.get("name"))


@dataclass(frozen=True)
class GuestStatus:
    guest: Guest
    ips: tuple[str, ...] = ()
    qmp_status: str | None = None
    config: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Nic:
    """One network interface of a guest as its config says: where it connects and its static IPv4 address.

    ``address`` is ``10.20.0.11/24`` (qemu: from cloud-init ``ipconfigN``; lxc: the NIC's ``ip=``), or None
    for DHCP or no address.
    """

    index: int
    bridge: str | None
    vlan: int | None
    mac: str | None = None
    address: str | None = None


@dataclass(frozen=True)
class Snapshot:
    name: str
    description: str = ""
    parent: str | None = None
    snaptime: int | None = None
    vmstate: bool = False


@dataclass(frozen=True)
class Backup:
    volid: str
    storage: str
    vmid: int
    size: int
    ctime: int
    format: str = ""
    notes: str = ""
    protected: bool = False
    # PBS only: "ok" | "failed" | None when never verified (file storages never are)
    verification: str | None = None
    # qemu | lxc, from the content listing's subtype (or the volume name)
    kind: str = ""
    # where it was listed: its node for a local storage, None for a shared one
    node: str | None = None


@dataclass(frozen=True)
class BackupStore:
    """A storage that holds backups, as one node sees it; a shared one is the same store on every node."""

    storage: str
    node: str
    shared: bool


@dataclass(frozen=True)
class BackupJob:
    """A Proxmox cluster backup job (``/cluster/backup``): its id, schedule and vzdump options as Proxmox keeps them."""

    id: str
    schedule: str
    options: dict[str, str]
    enabled: bool = True
    next_run: int | None = None

    @property
    def vmids(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.options.get("vmid", "").replace(";", ",").split(",") if v.strip())


@dataclass(frozen=True)
class TaskInfo:
    """One finished (or running) task from a node's task history."""

    upid: str
    node: str
    type: str
    id: str
    user: str
    starttime: int
    endtime: int | None
    # OK | WARNINGS: n | the error text; None while it runs
    status: str | None


@dataclass
class BackupOwner:
    """Which company a backup belongs to: the owner of its VM when pvebot first saw it.

    A VMID is reused once its guest is deleted, so a backup's VMID alone does not say whose it is.
    """

    cluster_id: int
    volid: str
    vmid: int
    company_id: int
    seen_at: datetime
    id: int | None = None


class Topic(enum.StrEnum):
    """What a notification subscription hears about."""

    BACKUPS = "backups"
    JOBS = "jobs"
    APPROVALS = "approvals"
    UPDATES = "updates"


class SubscriptionState(enum.StrEnum):
    ACTIVE = "active"
    # the platform said the channel is gone (archived, deleted, the bot removed): nothing more is sent
    BROKEN = "broken"


@dataclass(eq=False)
class Subscription:
    """A channel that hears about one topic of one company, or of every company (``company_id`` None).

    ``channel`` is ``platform:id`` as provisioning writes it; it is resolved when a message goes out
    (:func:`core.services.channels.resolve`), so a Teams channel waits until the bot has been written to there.
    """

    company_id: int | None
    topic: Topic
    channel: str
    created_by: int | None
    created_at: datetime
    vm: str | None = None
    only_failures: bool = False
    state: SubscriptionState = SubscriptionState.ACTIVE
    problem: str | None = None
    last_delivery_at: datetime | None = None
    # written by the provisioning file (which keeps it as declared), not typed in the channel
    declared: bool = False
    id: int | None = None


@dataclass(eq=False)
class EventSource:
    """How one cluster tells pvebot of its events: the webhook pvebot installed there (push), if any.

    ``secret_encrypted`` is the random token Proxmox sends back as a header, stored like a cluster's
    API token; the pull reconciler needs nothing of this (it reads the task history).
    """

    cluster_id: int
    secret_encrypted: str | None = None
    url: str | None = None
    installed_at: datetime | None = None
    last_push_at: datetime | None = None
    # who polls the cluster now (a process id) and until when, for ``events status``
    poller: str | None = None
    poller_until: datetime | None = None

    def __repr__(self) -> str:  # never show the (encrypted) secret
        return f"EventSource(cluster_id={self.cluster_id!r}, url={self.url!r})"


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    # given up: its channel is gone, or it could not get through within the bound
    DROPPED = "dropped"


@dataclass(eq=False)
class OutboxMessage:
    """One message to send to one subscription's channel: written first, sent later, sent once.

    ``event_key`` (cluster, node and task for a backup run) is unique per subscription, so an event
    that arrives twice (pushed and pulled) queues one message.
    """

    subscription_id: int
    channel: str
    event_key: str
    reply: dict[str, Any]
    # one line for a digest when several messages wait for the same channel
    summary: str
    failed: bool
    created_at: datetime
    not_before: datetime
    state: OutboxState = OutboxState.PENDING
    attempts: int = 0
    # a sender holds the row until then; after a crash another sender takes it over
    claimed_until: datetime | None = None
    sent_at: datetime | None = None
    id: int | None = None


@dataclass(frozen=True)
class TaskRef:
    """A Proxmox task: the node it runs on and its UPID. ``upid`` is None for synchronous work."""

    cluster: str
    node: str
    upid: str | None


@dataclass(frozen=True)
class TaskStatus:
    running: bool
    exitstatus: str | None = None
    percent: float | None = None
    log_tail: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        # Proxmox ends a task that did its work but logged warnings with "WARNINGS: n": a success
        return not self.running and (self.exitstatus == "OK" or self.warnings is not None)

    @property
    def warnings(self) -> str | None:
        """``WARNINGS: n`` when the task succeeded with warnings, else None."""
        status = self.exitstatus or ""
        return status if not self.running and status.startswith("WARNINGS: ") else None


# ---- SSH to cluster nodes ------------------------------------------------------------


class SshKeyState(enum.StrEnum):
    # made, not yet in the cluster's authorized_keys (a push or a rotation is under way)
    NEW = "new"
    # the key pvebot logs in with
    ACTIVE = "active"
    # replaced by a rotation; its line is being removed
    RETIRED = "retired"


@dataclass(eq=False)
class SshKey:
    """pvebot's SSH key for one cluster: the private half encrypted like the API token."""

    cluster_id: int
    private_key_encrypted: str
    # the OpenSSH public line without a comment: "ssh-ed25519 AAAA…"
    public_key: str
    fingerprint: str
    created_at: datetime
    state: SshKeyState = SshKeyState.NEW
    # the comment of its authorized_keys line, which names pvebot, the cluster and the date
    comment: str = ""
    id: int | None = None

    def __repr__(self) -> str:  # never show the (encrypted) private key
        return f"SshKey(cluster_id={self.cluster_id!r}, fingerprint={self.fingerprint!r}, state={self.state.value!r})"


@dataclass(eq=False)
class SshNode:
    """A node of a cluster as pvebot reaches it over SSH, with its pinned host key (SHA256:… or None)."""

    cluster_id: int
    node: str
    host: str
    port: int = 22
    user: str = "root"
    host_key: str | None = None
    # the cluster-shared authorized_keys file as seen from this node (pmxcfs: the same file on every node)
    keys_file: str = "/etc/pve/priv/authorized_keys"
    # the last key health check ("ok" or what was wrong) and when
    health: str | None = None
    checked_at: datetime | None = None
    id: int | None = None


@dataclass(frozen=True)
class PackageUpdate:
    """One available package update on a node, as ``GET /nodes/{node}/apt/update`` lists it."""

    package: str
    version: str
    old_version: str | None
    origin: str
    title: str = ""

    @property
    def proxmox(self) -> bool:
        return self.origin.lower() == "proxmox" or self.package.startswith(("pve-", "proxmox-"))


@dataclass(frozen=True)
class NodeState:
    name: str
    online: bool


@dataclass(frozen=True)
class ClusterState:
    """``GET /cluster/status``: whether corosync has quorum and which nodes are online."""

    quorate: bool
    nodes: tuple[NodeState, ...]
