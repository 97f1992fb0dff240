"""The outside world as the core sees it: Protocols that adapters implement.

Services receive these (never concrete adapters); the composition root in ``bot/`` builds
the real ones, and the tests pass fakes from ``tests/fakes.py``.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from core.chat import ConversationRef, MessageRef, Reply
from core.guest_index import GuestIndex
from core.model import (
    ApprovalRequest,
    ApprovalState,
    AuditEvent,
    Backup,
    BackupJob,
    BackupOwner,
    BackupStore,
    ChatIdentity,
    Cluster,
    ClusterState,
    Company,
    EventSource,
    Guest,
    GuestIdentity,
    GuestRef,
    GuestStatus,
    IpAssignment,
    IpRange,
    Job,
    JobBrief,
    JobRoute,
    JobState,
    KnownChannel,
    Nic,
    OutboxMessage,
    OutboxState,
    PackageUpdate,
    PoolBinding,
    Snapshot,
    SshKey,
    SshNode,
    Subscription,
    TaskInfo,
    TaskRef,
    TaskStatus,
    Topic,
    User,
)
from core.principal import Scope

# ---- Hypervisor ----------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigChange:
    """Changes to a guest's configuration; None leaves a setting as it is."""

    cores: int | None = None
    memory_mb: int | None = None
    # (NIC index, VLAN tag or None to remove the tag)
    vlan: tuple[int, int | None] | None = None
    # (ipconfig index, cloud-init value such as "ip=10.0.0.5/24,gw=10.0.0.1")
    ipconfig: tuple[int, str] | None = None

    @property
    def empty(self) -> bool:
        return self.cores is None and self.memory_mb is None and self.vlan is None and self.ipconfig is None


@dataclass(frozen=True)
class NicAddress:
    """What one NIC is set to: its static address and where it connects.

    ``address`` is ``10.20.0.11/24``, or None to remove the static address. ``bridge`` None keeps the NIC's
    bridge; ``vlan`` None removes its tag. DNS settings are left alone when empty.
    """

    nic: int
    address: str | None
    gateway: str | None = None
    bridge: str | None = None
    vlan: int | None = None
    dns: tuple[str, ...] = ()
    search_domain: str | None = None


class Hypervisor(Protocol):
    """One Proxmox VE cluster, reached through any of its API URLs.

    Every method raises :class:`core.errors.ExternalSystemError` (or ``NotFound`` /
    ``Conflict`` / ``PermissionDenied`` where Proxmox says so) with a message safe for chat.
    """

    cluster_name: str

    def inventory(self, *, refresh: bool = False) -> builtins.list[Guest]:
        """Every guest of the cluster from one ``GET /cluster/resources?type=vm`` (cached briefly)."""
        ...

    def index(self, *, refresh: bool = False) -> GuestIndex:
        """The same inventory, indexed once per refresh and shared by every caller of the process.

        Args:
            refresh: fetch anew (ownership re-checks before destructive work) instead of
                taking the cached answer, which is never older than the configured bound.
        """
        ...

    def status(self, ref: GuestRef) -> GuestStatus:
        """Current state, config, pending changes and guest-agent IPs when known."""
        ...

    def identity(self, ref: GuestRef) -> GuestIdentity:
        """What tells this guest from a later one with the same VMID (one config read, never cached)."""
        ...

    def guest_config(self, ref: GuestRef) -> dict[str, str]:
        """The guest's current configuration, from one ``GET …/config`` (``ostype``, ``cores``, disks, …)."""
        ...

    def power(self, ref: GuestRef, action: str) -> TaskRef:
        """start | shutdown | stop | reboot | reset | suspend | resume."""
        ...

    def next_vmid(self) -> int: ...

    def clone(
        self, template: GuestRef, *, newid: int, name: str, pool: str, full: bool = True, target_node: str | None = None
    ) -> TaskRef: ...

    def configure(self, ref: GuestRef, change: ConfigChange) -> TaskRef: ...

    def nics(self, ref: GuestRef) -> builtins.list[Nic]:
        """The guest's network interfaces as its config says (one config read)."""
        ...

    def set_address(self, ref: GuestRef, change: NicAddress) -> TaskRef:
        """Give one NIC an address, bridge and VLAN (qemu: cloud-init ``ipconfigN``), keeping its MAC."""
        ...

    def regenerate_cloudinit(self, ref: GuestRef) -> TaskRef:
        """Rebuild a qemu guest's cloud-init drive from its config (nothing happens without such a drive)."""
        ...

    def bridges(self, node: str) -> builtins.list[str]:
        """The bridges of ``node`` a NIC can be attached to."""
        ...

    def resize_disk(self, ref: GuestRef, *, disk: str, size: str) -> TaskRef:
        """``size`` as Proxmox takes it: ``+10G`` grows by, ``32G`` grows to."""
        ...

    def delete(self, ref: GuestRef) -> TaskRef:
        """Destroy with purge (removes it from jobs, HA, pools) and unreferenced disks."""
        ...

    def snapshots(self, ref: GuestRef) -> builtins.list[Snapshot]:
        """Snapshots, oldest first, without the pseudo-entry ``current``."""
        ...

    def create_snapshot(self, ref: GuestRef, name: str, *, description: str = "", vmstate: bool = False) -> TaskRef: ...

    def rollback_snapshot(self, ref: GuestRef, name: str) -> TaskRef: ...

    def delete_snapshot(self, ref: GuestRef, name: str) -> TaskRef: ...

    def backup(self, ref: GuestRef, *, storage: str, mode: str = "snapshot", notes: str | None = None,
               protected: bool = False) -> TaskRef:
        """vzdump of one guest on its own node; raises when Proxmox answers without a task (wrong node)."""
        ...

    def backups(self, *, node: str, storage: str, vmid: int | None = None) -> builtins.list[Backup]:
        """One ``…/storage/{storage}/content?content=backup`` call, oldest first."""
        ...

    def backup_storages(self, node: str) -> builtins.list[str]:
        """The storages of ``node`` that hold backups (one ``/cluster/resources?type=storage`` call)."""
        ...

    def backup_stores(self) -> builtins.list[BackupStore]:
        """Every (storage, node) that holds backups, with whether it is shared (one resources call)."""
        ...

    def set_backup_protected(self, *, node: str, storage: str, volid: str, protected: bool) -> None: ...

    def delete_backup(self, *, node: str, storage: str, volid: str) -> TaskRef: ...

    def restore(
        self, *, node: str, kind: str, vmid: int, archive: str, storage: str | None = None, force: bool = False,
        pool: str | None = None, unique: bool = False, name: str | None = None,
    ) -> TaskRef: ...

    def backup_jobs(self) -> builtins.list[BackupJob]:
        """Every cluster backup job (``GET /cluster/backup``), whoever made it."""
        ...

    def save_backup_job(self, job_id: str, *, schedule: str | None, options: dict[str, str], create: bool,
                        delete: builtins.list[str] | None = None) -> None:
        """Create (``create``) or change a cluster backup job; ``delete`` names options to unset, a change
        without ``schedule`` keeps the job's."""
        ...

    def delete_backup_job(self, job_id: str) -> None: ...

    def analyze_schedule(self, schedule: str, *, iterations: int = 3) -> builtins.list[int]:
        """The next runs (UNIX times) of a calendar event, as Proxmox reads it; InvalidArguments if bad."""
        ...

    def run_backup(self, *, node: str, options: dict[str, str]) -> TaskRef | None:
        """vzdump with a job's options on one node, as "Run now" does; None when nothing there is selected."""
        ...

    def tasks(self, *, node: str, typefilter: str, since: int | None = None,
              limit: int = 500, start: int = 0, source: str = "archive") -> builtins.list[TaskInfo]:
        """A node's tasks of one type, newest first (``GET /nodes/{node}/tasks``): finished ones
        (``source="archive"``), or running ones too (``"all"``, their status None); ``limit`` of
        them from the ``start``-th on."""
        ...

    def task_log(self, *, node: str, upid: str, limit: int = 5000) -> builtins.list[str]:
        """A task's log lines, redacted."""
        ...

    def task_status(self, task: TaskRef) -> TaskStatus:
        """Where a task is: running or its exit status, percent done where logged, last log lines."""
        ...

    def cancel_task(self, task: TaskRef) -> None: ...

    def cluster_state(self) -> ClusterState:
        """Quorum and the nodes online (``GET /cluster/status``)."""
        ...

    def apt_updates(self, node: str) -> builtins.list[PackageUpdate]:
        """The updates the node's last ``apt-get update`` found (``GET /nodes/{node}/apt/update``)."""
        ...

    def refresh_updates(self, node: str) -> TaskRef:
        """Run ``apt-get update`` on the node through the API, without notifying (``POST …/apt/update``)."""
        ...

    def proxmox_version(self, node: str) -> str | None:
        """The running pve-manager version of the node (``GET /nodes/{node}/apt/versions``)."""
        ...


@dataclass(frozen=True)
class WebhookTarget:
    """A cluster's webhook notification target as the API shows it (secret values never are)."""

    name: str
    url: str
    comment: str = ""
    secret_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class NotificationMatcher:
    name: str
    targets: tuple[str, ...]
    match_fields: tuple[str, ...]
    comment: str = ""


class ClusterNotifications(Protocol):
    """A cluster's notification configuration (``/cluster/notifications``): webhook targets and matchers."""

    def webhooks(self) -> builtins.list[WebhookTarget]: ...

    def save_webhook(self, name: str, *, url: str, headers: dict[str, str], body: str, secrets: dict[str, str],
                     comment: str, create: bool) -> None:
        """Create or replace a webhook target; header values, the body and the URL are templates."""
        ...

    def delete_webhook(self, name: str) -> None: ...
    def matchers(self) -> builtins.list[NotificationMatcher]: ...

    def save_matcher(self, name: str, *, targets: builtins.list[str], match_fields: builtins.list[str],
                     comment: str, create: bool) -> None: ...

    def delete_matcher(self, name: str) -> None: ...

    def test_target(self, name: str) -> None:
        """Have the cluster send a test notification through target ``name`` now.

        Raises:
            ExternalSystemError: the cluster could not deliver it (the receiver refused or is unreachable).
        """
        ...


class Hypervisors(Protocol):
    """Gives the :class:`Hypervisor` of a configured cluster."""

    def for_cluster(self, cluster: Cluster) -> Hypervisor: ...


# ---- Secrets ---------------------------------------------------------------------------


class SecretCipher(Protocol):
    """Encrypts secrets at rest. ``decrypt`` raises ``ConfigurationError`` on a wrong key."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, token: str) -> str: ...


# ---- Persistence -----------------------------------------------------------------------


class CompanyRepository(Protocol):
    def get(self, company_id: int) -> Company | None: ...
    def by_slug(self, slug: str) -> Company | None: ...
    def list(self) -> builtins.list[Company]: ...
    def add(self, company: Company) -> None: ...

    def lock(self, company_id: int) -> None:
        """Hold the company's row until this unit of work ends: decisions on its quotas queue up here."""
        ...


class UserRepository(Protocol):
    def get(self, user_id: int) -> User | None: ...
    def by_email(self, email: str) -> User | None: ...
    def list(self) -> builtins.list[User]: ...
    def add(self, user: User) -> None: ...


class IdentityRepository(Protocol):
    def find(self, *, platform: str, workspace_id: str, platform_user_id: str) -> ChatIdentity | None: ...
    def for_user(self, user_id: int) -> builtins.list[ChatIdentity]: ...
    def add(self, identity: ChatIdentity) -> None: ...
    def remove(self, identity: ChatIdentity) -> None: ...


class KnownChannelRepository(Protocol):
    """Channels the bot was written to; unscoped (a channel is no company's until provisioning names it)."""

    def get(self, *, platform: str, workspace_id: str, channel_id: str) -> KnownChannel | None: ...

    def with_id(self, *, platform: str, channel_id: str) -> builtins.list[KnownChannel]:
        """Every workspace's channel with this id (one, unless two tenants report the same id)."""
        ...

    def add(self, channel: KnownChannel) -> None:
        """Store a new channel; raises ``DuplicateRequest`` when another process stored it first."""
        ...


class ClusterRepository(Protocol):
    def get(self, cluster_id: int) -> Cluster | None: ...
    def by_name(self, name: str) -> Cluster | None: ...
    def list(self) -> builtins.list[Cluster]: ...
    def add(self, cluster: Cluster) -> None: ...


class PoolBindingRepository(Protocol):
    def list(self) -> builtins.list[PoolBinding]: ...
    def add(self, binding: PoolBinding) -> None: ...
    def remove(self, binding: PoolBinding) -> None: ...


class AuditLog(Protocol):
    def append(self, event: AuditEvent) -> None: ...
    def query(
        self,
        *,
        since: datetime | None = None,
        company_id: int | None = None,
        actor: str | None = None,
        limit: int = 500,
    ) -> builtins.list[AuditEvent]: ...


class JobRepository(Protocol):
    def add(self, job: Job) -> None:
        """Store a new job; raises ``DuplicateRequest`` when its request id is taken."""
        ...

    def get(self, job_id: str) -> Job | None: ...
    def by_request(self, request_id: str) -> Job | None: ...
    def list(self, *, states: Iterable[JobState] | None = None, limit: int = 50) -> builtins.list[Job]: ...
    def last_for(self, *, cluster: str, vmid: int) -> JobBrief | None:
        """The newest job on guest ``vmid`` of ``cluster``, in scope, in brief."""
        ...

    def add_task(self, job: Job, upid: str) -> None:
        """Record that ``job`` started the Proxmox task ``upid`` (once; again is a no-op)."""
        ...

    def askers(self, upids: Iterable[str]) -> dict[str, User]:
        """Who asked for the jobs, in scope, that started these Proxmox tasks: by UPID, one query for all.

        Every task a job started counts, not only the one it followed last (a schedule run starts one per node).

        A task of another company's job is simply not there, like any task pvebot did not start.
        """
        ...

    def route_if_queued(self, job_id: str) -> JobRoute | None:
        """Where a job still queued reports (read alone, not the whole record); None once it is not queued."""
        ...

    def hand_over(self, job_id: str, *, route: JobRoute, queue_owner: str | None) -> bool:
        """Record where a still-queued job reports and the queue it goes to; False when it is queued no more."""
        ...

    def claim(self, job_id: str, *, now: datetime) -> bool:
        """Move a queued job to running atomically; False when another delivery got there first."""
        ...

    def settle(self, job_id: str, *, expected: Iterable[JobState], to: JobState, at: datetime, result: str) -> bool:
        """Give a job its final state if it is still in one of ``expected``; False when it was not."""
        ...

    def stale(self, *, heartbeat_before: datetime) -> builtins.list[Job]: ...
    def waiting(self) -> builtins.list[Job]:
        """Every job still queued (not claimed by a worker), oldest first."""
        ...


class ApprovalRepository(Protocol):
    def add(self, request: ApprovalRequest) -> None:
        """Store a new request; raises ``DuplicateRequest`` when its request id is taken."""
        ...

    def get(self, approval_id: str) -> ApprovalRequest | None: ...
    def by_request(self, request_id: str) -> ApprovalRequest | None: ...
    def list(
        self, *, states: Iterable[ApprovalState] | None = None, limit: int = 50
    ) -> builtins.list[ApprovalRequest]: ...
    def decide(self, approval_id: str, *, to: ApprovalState, by_user_id: int, at: datetime, note: str = "") -> bool:
        """Move a pending request to ``to`` atomically; False when someone else decided first."""
        ...


class IpRangeRepository(Protocol):
    def get(self, range_id: int) -> IpRange | None: ...
    def by_name(self, company_id: int, name: str) -> IpRange | None: ...
    def list(self) -> builtins.list[IpRange]: ...
    def add(self, ip_range: IpRange) -> None: ...
    def remove(self, ip_range: IpRange) -> None: ...


class IpAssignmentRepository(Protocol):
    def add(self, assignment: IpAssignment) -> None:
        """Store a new assignment; raises ``DuplicateRequest`` when its address, or its NIC, is taken already."""
        ...

    def count(self, range_id: int) -> int:
        """How many addresses of ``range_id`` are held."""
        ...

    def first_free(self, range_id: int, start: int) -> int:
        """The lowest number at or above ``start`` that no assignment of ``range_id`` holds (it may be past the
        range's end: the caller checks)."""
        ...

    def for_range(self, range_id: int) -> builtins.list[IpAssignment]: ...
    def for_company(self) -> builtins.list[IpAssignment]: ...
    def for_guest(self, cluster_id: int, vmid: int) -> builtins.list[IpAssignment]: ...
    def get(self, assignment_id: int) -> IpAssignment | None: ...

    def bind(self, assignment_id: int, *, vmid: int) -> bool:
        """Give a held address to the guest just created; False when it was released meanwhile."""
        ...

    def release(self, assignment_id: int) -> bool:
        """Remove one assignment; False when it was gone already."""


class BackupOwnerRepository(Protocol):
    """Which company each backup pvebot has seen belongs to (see :class:`core.model.BackupOwner`)."""

    def mine(self, cluster_id: int, *, vmid: int | None = None) -> dict[str, int]:
        """Volume id -> owning company, for the scope's companies' backups on this cluster (of one VMID)."""
        ...

    def known(self, cluster_id: int, *, vmid: int | None = None) -> builtins.set[str]:
        """Every volume id with an owner on this cluster (of one VMID), whoever it is (no owner is revealed)."""
        ...

    def reused(self, cluster_id: int) -> builtins.set[int]:
        """The VMIDs on this cluster that had a guest of a company outside the scope (no owner is revealed)."""
        ...

    def add(self, owners: Iterable[BackupOwner]) -> None:
        """Record owners; raises ``DuplicateRequest`` when a backup has one already (record none then)."""
        ...


class SubscriptionRepository(Protocol):
    """Notification subscriptions; a scoped caller sees its companies' (provider ones have no company)."""

    def get(self, subscription_id: int) -> Subscription | None: ...
    def list(self, *, topic: Topic | None = None, active_only: bool = False) -> builtins.list[Subscription]: ...

    def listeners(self, topic: Topic) -> builtins.list[Subscription]:
        """Every active subscription of ``topic`` in every scope: recording an event is system work, and
        :func:`core.services.notifications.message_for` decides what each one hears."""
        ...
    def add(self, subscription: Subscription) -> None: ...
    def remove(self, subscription: Subscription) -> None: ...

    def mark_broken(self, subscription_id: int, *, problem: str) -> bool:
        """Stop sending to a gone channel; False when it was marked already (its owner was told then)."""
        ...

    def delivered(self, subscription_ids: Iterable[int], *, at: datetime) -> None: ...


class OutboxRepository(Protocol):
    """Messages to send to subscriptions' channels, one row each (unscoped: system work only)."""

    def add(self, message: OutboxMessage) -> bool:
        """Queue a message; False (and nothing queued) when its subscription has this event already."""
        ...

    def due(self, *, now: datetime, limit: int = 500) -> builtins.list[OutboxMessage]:
        """Pending messages whose time has come and that no live sender holds, oldest first."""
        ...

    def claim(self, message_id: int, *, now: datetime, until: datetime) -> bool:
        """Hold a due message until ``until``; False when another sender holds it or it was settled."""
        ...

    def settle(self, message_ids: Iterable[int], *, to: OutboxState, at: datetime) -> None: ...

    def postpone(self, message_ids: Iterable[int], *, until: datetime) -> None:
        """Release held messages for another attempt at ``until`` (one more attempt counted)."""
        ...

    def last_sent(self, channel: str) -> datetime | None: ...
    def pending(self, subscription_id: int) -> int: ...


class SshRepository(Protocol):
    """pvebot's SSH keys and the nodes it reaches per cluster; provider data, for an unrestricted scope only."""

    def keys(self, cluster_id: int) -> builtins.list[SshKey]: ...
    def add_key(self, key: SshKey) -> None: ...
    def remove_key(self, key: SshKey) -> None: ...
    def nodes(self, cluster_id: int) -> builtins.list[SshNode]: ...
    def add_node(self, node: SshNode) -> None: ...
    def remove_node(self, node: SshNode) -> None: ...


class EventSourceRepository(Protocol):
    """Per cluster: the installed webhook, who polls it now (a lease), where each node's poll got to,
    and which events were recorded already (unscoped: system work only)."""

    def get(self, cluster_id: int) -> EventSource | None: ...
    def save(self, source: EventSource) -> None: ...

    def take_lease(self, cluster_id: int, *, owner: str, now: datetime, until: datetime) -> bool:
        """Hold the cluster's poller until ``until``; False while another live owner holds it."""
        ...

    def release_lease(self, cluster_id: int, *, owner: str) -> None: ...
    def pushed(self, cluster_id: int, *, at: datetime) -> None: ...
    def cursors(self, cluster_id: int) -> dict[str, int]: ...

    def cursor(self, cluster_id: int, node: str) -> int | None:
        """The task start time (epoch) the node's next poll reads from; None before its first poll."""
        ...

    def set_cursor(self, cluster_id: int, node: str, since: int) -> None: ...

    def node_version(self, cluster_id: int, node: str) -> str | None:
        """The Proxmox VE version the node ran when last checked; None before its first check."""
        ...

    def set_node_version(self, cluster_id: int, node: str, version: str) -> None: ...

    def seen(self, key: str) -> bool: ...

    def mark_seen(self, key: str, *, at: datetime) -> bool:
        """Record that event ``key`` was handled; False (nothing changed) when it had been already."""
        ...

    def forget_seen(self, *, before: datetime) -> int:
        """Drop the records of events handled before ``before``; how many went."""
        ...


class UnitOfWork(Protocol):
    """A transaction over repositories that all see only ``scope``'s companies.

    Use as a context manager; nothing is saved unless :meth:`commit` is called.
    """

    scope: Scope
    companies: CompanyRepository
    users: UserRepository
    identities: IdentityRepository
    channels: KnownChannelRepository
    clusters: ClusterRepository
    pool_bindings: PoolBindingRepository
    audit: AuditLog
    jobs: JobRepository
    approvals: ApprovalRepository
    ip_ranges: IpRangeRepository
    ip_assignments: IpAssignmentRepository
    backup_owners: BackupOwnerRepository
    subscriptions: SubscriptionRepository
    outbox: OutboxRepository
    ssh: SshRepository
    event_sources: EventSourceRepository

    def __enter__(self) -> UnitOfWork: ...
    def __exit__(self, *args: object) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...

    def directory_version(self) -> int | None:
        """A number that every committed change to users, chat identities, companies, clusters or pool
        bindings raises; None when the store keeps none (then nothing read of them may be kept)."""
        ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, scope: Scope, *, autocommit: bool = False) -> UnitOfWork:
        """A unit of work that sees what ``scope`` allows.

        ``autocommit``: each statement is its own transaction, durable once it has run, and
        ``commit`` sends nothing more. For reads and for a single row written alone: on a server
        they then cost one round trip a statement and none to begin or end. Never for writes that
        must hold together (it refuses a second row, or a change to the directory).
        """
        ...


# ---- Work and conversation -------------------------------------------------------------


class JobQueue(Protocol):
    """Runs job functions elsewhere (RQ workers), found by dotted path, with primitive kwargs."""

    # who holds what is enqueued: an id of this process for a queue that dies with it (embedded),
    # None for a shared queue (Redis) that any worker process serves
    owner: str | None

    def enqueue(self, function: str, *, job_id: str, kwargs: dict[str, Any], timeout: int) -> None: ...

    def cancel(self, job_id: str) -> bool:
        """Drop a job that has not started; False if it already runs or ran."""
        ...

    def holds(self, job_id: str) -> bool:
        """Whether the queue still has the job (waiting, running or kept as done); True when it cannot tell."""
        ...


class Notifier(Protocol):
    """Posts and edits messages in a conversation, from any process."""

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef: ...

    def update(self, message: MessageRef, reply: Reply) -> None: ...


class DirectMessages(Protocol):
    """Opens a one-to-one conversation with a person, for cards that must reach them (approvals)."""

    def direct(self, identity: ChatIdentity, *, near: ConversationRef) -> ConversationRef | None:
        """The person's direct conversation with the bot, or None when this platform cannot open one.

        Args:
            identity: who, on which platform and workspace.
            near: a conversation the request came from; Teams takes its serviceUrl and bot id from it.

        Raises:
            ExternalSystemError: the platform refused or did not answer in time.
        """
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """Timezone-aware UTC now."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for deadlines and intervals."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait; a fake clock moves on instead."""
        ...


class Directory(Protocol):
    """Platform lookups for automatic linking (Slack users.info, Teams member info, Microsoft Graph).

    Each answer is None or empty when the platform does not know or cannot say (unsupported,
    unreachable, refused); a lookup never raises.
    """

    def email_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        """The member's email (Teams: email or UPN), lower-case."""
        ...

    def name_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        """The member's display name."""
        ...

    def groups_of(self, platform: str, workspace_id: str, user_id: str) -> frozenset[str]:
        """The ids of the directory groups the member belongs to (Azure AD object ids, lower-case).

        A separate question from the email because it is a costlier call (Microsoft Graph): the
        core asks it only when some company maps groups to roles.
        """
        ...


# ---- Remote shell (SSH) ----------------------------------------------------------------


@dataclass(frozen=True)
class ShellTarget:
    """One node as pvebot reaches it: address, login and the pinned host key (``SHA256:…``)."""

    cluster: str
    node: str
    host: str
    port: int
    user: str
    host_key: str | None


@dataclass(frozen=True)
class Credentials:
    """How to log in: pvebot's private key (OpenSSH PEM) or, once, for a first push, a password.

    Never printed: the representation names only which one it holds.
    """

    private_key: str | None = None
    password: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(key={'yes' if self.private_key else 'no'}, password={'yes' if self.password else 'no'})"


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    output: tuple[str, ...] = ()


class RemoteShell(Protocol):
    """Commands on cluster nodes over SSH, the host key checked against its pin before anything is sent.

    Every method raises ``HostKeyMismatch`` (a changed host key: nothing was sent), ``HostKeyUnknown`` (no pin),
    ``LoginFailed`` (the key or password was refused) or ``ExternalSystemError`` (unreachable, timed out).
    """

    def host_key(self, target: ShellTarget) -> str:
        """The SHA-256 fingerprint the node shows, without logging in (for ``cluster trust``)."""
        ...

    def run(self, target: ShellTarget, credentials: Credentials, command: str, *, stdin: str | None = None,
            on_line: Callable[[str], None] | None = None, timeout: float = 60.0) -> CommandResult:
        """Run ``command``; each output line goes to ``on_line`` as it comes; stdout and stderr are merged."""
        ...


class KeyMaker(Protocol):
    """Makes pvebot's SSH key pairs."""

    def generate(self) -> tuple[str, str, str]:
        """A new key: (private OpenSSH PEM, public line ``ssh-ed25519 AAAA…``, fingerprint ``SHA256:…``)."""
        ...
