"""Backup runs reach pvebot by pull (each node's task history) and by push (the cluster's webhook).

Pull is the one that cannot miss: Proxmox sends its webhook once, without retry, and skips it for
jobs that still mail, so every node's ``vzdump`` task history is read from a stored cursor every
poll interval. One process polls a cluster at a time (a lease row), however many run. A push only
says "node X has news": it triggers a pull of that node, so both paths build the event the same way
and record it under the same key (``vzdump:<cluster>:<node>:<upid>``), once.

The cursor is the start time of the oldest task still running (a run that ends later is read again
next time), else of the newest one listed; ``since`` is inclusive, and a run already recorded is
skipped before its log is read.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from datetime import timedelta

from core.errors import BotError
from core.model import Cluster, TaskInfo
from core.ports import Hypervisor, SecretCipher
from core.principal import Scope
from core.services import backup_events, notifications
from core.services.deps import Deps

log = logging.getLogger(__name__)

# tasks per page of a node's task history, and at most this many pages per poll (10,000 runs)
_PAGE = 500
_MAX_PAGES = 20
SEEN_FOR = timedelta(days=7)


@dataclass(frozen=True)
class PollPolicy:
    """How often clusters are polled and how far back a node's first poll reads."""

    interval: timedelta = timedelta(seconds=60)
    lookback: timedelta = timedelta(hours=1)

    @property
    def lease(self) -> timedelta:
        # held across polls, so the same process keeps the cluster; a dead one's passes to another after this
        return max(self.interval * 3, timedelta(seconds=30))


@dataclass
class Pulled:
    """What one pull of one node did."""

    recorded: int = 0  # events recorded (runs seen for the first time)
    queued: int = 0  # messages they queued
    running: int = 0  # vzdump tasks still running: their event comes on a later pull
    cursor: int | None = None


def owners(deps: Deps, cluster: Cluster) -> dict[int, backup_events.Owner]:
    """VMID → name and owning company, from the cluster's inventory and pvebot's pool bindings."""
    with deps.uow_factory(Scope.everything()) as uow:
        by_pool = {b.pool: b.company_id for b in uow.pool_bindings.list() if b.cluster_id == cluster.id}
    index = deps.hypervisors.for_cluster(cluster).index()
    return {g.vmid: backup_events.Owner(name=g.name, company_id=by_pool.get(g.pool) if g.pool else None)
            for g in index.guests}


def nodes_of(deps: Deps, cluster: Cluster) -> list[str]:
    """The nodes whose task history may hold backup runs: those with guests or backup storage."""
    hv = deps.hypervisors.for_cluster(cluster)
    return sorted({g.node for g in hv.index().guests} | {s.node for s in hv.backup_stores()})


def pull_node(deps: Deps, cluster: Cluster, node: str, *, since: int) -> Pulled:
    """Record every finished vzdump run of ``node`` started at ``since`` or later that was not recorded yet.

    Args:
        deps: ports.
        cluster: the cluster.
        node: one of its nodes.
        since: epoch seconds (inclusive), on the tasks' start time.

    Returns:
        What was recorded, and the cursor the node's next poll should read from.

    Raises:
        BotError: the cluster did not answer (nothing is recorded for the runs not reached).
    """
    hv = deps.hypervisors.for_cluster(cluster)
    tasks = _tasks_since(hv, node=node, since=since)
    done = Pulled(cursor=since)
    running = [t.starttime for t in tasks if t.status is None]
    finished = sorted((t for t in tasks if t.status is not None), key=lambda t: (t.starttime, t.upid))
    done.running = len(running)
    if running:
        done.cursor = min(running)
    elif tasks:
        done.cursor = max(t.starttime for t in tasks)
    known: dict[int, backup_events.Owner] | None = None
    for task in finished:
        key = backup_events.event_key(cluster=cluster.name, node=node, upid=task.upid)
        with deps.uow_factory(Scope.everything()) as uow:
            if uow.event_sources.seen(key):
                continue
        if known is None:
            known = owners(deps, cluster)
        queued = _record(deps, cluster, task, hv.task_log(node=node, upid=task.upid), known)
        if queued is not None:
            done.recorded += 1
            done.queued += queued
    return done


def _tasks_since(hv: Hypervisor, *, node: str, since: int) -> list[TaskInfo]:
    # Proxmox answers a page at a time, newest first: a node that ran more vzdump tasks since the
    # cursor than one page holds has its oldest ones on the next pages, which are read too
    found: list[TaskInfo] = []
    for page in range(_MAX_PAGES):
        tasks = hv.tasks(node=node, typefilter="vzdump", since=since, limit=_PAGE, start=page * _PAGE, source="all")
        found += tasks
        if len(tasks) < _PAGE:
            break
    else:
        log.warning("node %s ran more than %d backup tasks since the last poll; the oldest are not read",
                    node, _PAGE * _MAX_PAGES)
    return found


def _record(deps: Deps, cluster: Cluster, task: TaskInfo, lines: list[str],
            known: dict[int, backup_events.Owner]) -> int | None:
    event = backup_events.run_event(cluster=cluster.name, task=task, lines=lines, owners=known)
    with deps.uow_factory(Scope.everything()) as uow:
        # the seen row and the outbox rows in one transaction: a pull racing a push records the run once
        if not uow.event_sources.mark_seen(event.key, at=deps.clock.now()):
            return None
        queued = notifications.record(uow, event, clock=deps.clock)
        uow.commit()
    return queued


def hold(deps: Deps, cluster: Cluster, *, owner: str, lease: timedelta) -> bool:
    """Take or renew ``cluster``'s lease: the one process that does its periodic work (this poll, the
    maintenance loop's checks); False while another live process holds it."""
    assert cluster.id is not None
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        held = uow.event_sources.take_lease(cluster.id, owner=owner, now=now, until=now + lease)
        uow.commit()
    return held


def poll_cluster(deps: Deps, cluster: Cluster, *, owner: str, policy: PollPolicy) -> int | None:
    """One poll of every node of ``cluster`` if this process holds (or takes) its lease.

    Returns:
        How many runs were recorded; None when another process polls this cluster.
    """
    assert cluster.id is not None
    now = deps.clock.now()
    if not hold(deps, cluster, owner=owner, lease=policy.lease):
        return None
    recorded = 0
    first = int((now - policy.lookback).timestamp())
    for node in nodes_of(deps, cluster):
        with deps.uow_factory(Scope.everything()) as uow:
            since = uow.event_sources.cursor(cluster.id, node)
        try:
            pulled = pull_node(deps, cluster, node, since=first if since is None else since)
        except BotError as e:
            # a node that is down keeps its cursor and its runs for a later poll; the others go on
            log.warning("backup runs of %s/%s not read: %s", cluster.name, node, e.user_message)
            continue
        recorded += pulled.recorded
        if pulled.cursor is not None and pulled.cursor != since:
            with deps.uow_factory(Scope.everything()) as uow:
                uow.event_sources.set_cursor(cluster.id, node, pulled.cursor)
                uow.commit()
    return recorded


def poll(deps: Deps, *, owner: str, policy: PollPolicy | None = None) -> int:
    """:func:`poll_cluster` for every cluster; one that does not answer is logged and left for next time."""
    policy = policy or PollPolicy()
    with deps.uow_factory(Scope.everything()) as uow:
        clusters = uow.clusters.list()
        # a run is looked for again only while a cursor can still reach it (the lookback, or a run that
        # kept a cursor back while it went on); a week is far beyond either
        uow.event_sources.forget_seen(before=deps.clock.now() - SEEN_FOR)
        uow.commit()
    recorded = 0
    for cluster in clusters:
        try:
            recorded += poll_cluster(deps, cluster, owner=owner, policy=policy) or 0
        except Exception as e:
            log.warning("polling the backup runs of cluster %s failed: %s", cluster.name,
                        getattr(e, "user_message", type(e).__name__))
    return recorded


def release(deps: Deps, *, owner: str) -> None:
    """Give up this process's poller leases (on shutdown), so another process takes over at once."""
    with deps.uow_factory(Scope.everything()) as uow:
        for cluster in uow.clusters.list():
            if cluster.id is not None:
                uow.event_sources.release_lease(cluster.id, owner=owner)
        uow.commit()


# ---- push ----------------------------------------------------------------------------------

# compared against when the cluster is unknown or has no webhook, so that every refusal costs the same
_NOTHING = "x" * 43


def pushed_by(deps: Deps, *, cipher: SecretCipher, cluster_name: str, token: str | None) -> Cluster | None:
    """The cluster a webhook call comes from if ``token`` is the secret installed there; else None.

    The comparison is constant-time; an unknown cluster, one without a webhook, a missing and a wrong
    token all answer alike.
    """
    with deps.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name(cluster_name[:64])
        source = uow.event_sources.get(cluster.id) if cluster is not None and cluster.id is not None else None
    expected = _NOTHING
    if source is not None and source.secret_encrypted:
        expected = cipher.decrypt(source.secret_encrypted)
    given = (token or "").encode("utf-8", "replace")
    same = hmac.compare_digest(given, expected.encode())
    if not same or expected is _NOTHING or cluster is None or cluster.id is None:
        return None
    with deps.uow_factory(Scope.everything()) as uow:
        uow.event_sources.pushed(cluster.id, at=deps.clock.now())
        uow.commit()
    return cluster


def pull_pushed(deps: Deps, cluster: Cluster, node: str, *, policy: PollPolicy | None = None) -> Pulled:
    """The pull a push triggers: ``node``'s runs since its cursor (the cursor is the poller's to move)."""
    policy = policy or PollPolicy()
    assert cluster.id is not None
    with deps.uow_factory(Scope.everything()) as uow:
        since = uow.event_sources.cursor(cluster.id, node)
    if node not in nodes_of(deps, cluster):
        return Pulled()
    first = int((deps.clock.now() - policy.lookback).timestamp())
    return pull_node(deps, cluster, node, since=first if since is None else since)
