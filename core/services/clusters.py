"""``cluster list`` and ``cluster status``: one line of health per cluster, and a cluster's nodes.

A company admin sees the clusters its company uses (where it has a pool), with its own guests and no
node internals (names, versions, updates, SSH); the provider's super_admins see everything.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core import rbac
from core.errors import BotError, NotFound
from core.model import Cluster, SshKeyState
from core.principal import Principal, Scope
from core.rbac import Perm
from core.services import inventory
from core.services.deps import Deps


@dataclass(frozen=True)
class NodeRow:
    name: str
    online: bool
    version: str | None
    updates: int | None
    proxmox_updates: int | None
    ssh: str | None


@dataclass(frozen=True)
class Overview:
    name: str
    # None: the cluster did not answer (why says how)
    quorate: bool | None
    nodes_online: int
    nodes_total: int
    guests: int
    why: str = ""
    # the provider's view only
    updates: int | None = None
    key_age_days: int | None = None
    ssh_problems: int | None = None
    nodes: tuple[NodeRow, ...] = ()


def _nodes(deps: Deps, cluster: Cluster, quorum_nodes: list[tuple[str, bool]], *,
           versions: bool) -> tuple[NodeRow, ...]:
    hv = deps.hypervisors.for_cluster(cluster)
    with deps.uow_factory(Scope.everything()) as uow:
        assert cluster.id is not None
        health = {n.node: n.health for n in uow.ssh.nodes(cluster.id)}
    rows = []
    for name, online in quorum_nodes:
        version = updates = proxmox = None
        if online:
            try:
                # only `cluster status` shows the versions: `cluster list` need not ask every node
                version = hv.proxmox_version(name) if versions else None
                found = hv.apt_updates(name)
                updates, proxmox = len(found), sum(1 for u in found if u.proxmox)
            except BotError:
                pass
        rows.append(NodeRow(name, online, version, updates, proxmox, health.get(name)))
    return tuple(rows)


def _one(deps: Deps, cluster: Cluster, *, guests: int, provider: bool, versions: bool) -> Overview:
    try:
        state = deps.hypervisors.for_cluster(cluster).cluster_state()
    except BotError as e:
        return Overview(cluster.name, None, 0, 0, guests, why=e.user_message)
    online = sum(1 for n in state.nodes if n.online)
    if not provider:
        return Overview(cluster.name, state.quorate, online, len(state.nodes), guests)
    nodes = _nodes(deps, cluster, [(n.name, n.online) for n in state.nodes], versions=versions)
    with deps.uow_factory(Scope.everything()) as uow:
        assert cluster.id is not None
        key = next((k for k in uow.ssh.keys(cluster.id) if k.state is SshKeyState.ACTIVE), None)
    age = None if key is None else max(0, (deps.clock.now() - key.created_at).days)
    problems = sum(1 for n in nodes if n.ssh not in (None, "ok"))
    return Overview(cluster.name, state.quorate, online, len(state.nodes), guests,
                    updates=sum(n.updates or 0 for n in nodes), key_age_days=age, ssh_problems=problems, nodes=nodes)


def overview(deps: Deps, principal: Principal, *, cluster: str | None = None) -> list[Overview]:
    """The clusters the principal may see, each asked in parallel; one that does not answer says so in its line.

    Raises:
        PermissionDenied: the role may not read clusters.
        NotFound: ``cluster`` is not one the principal's companies use (or does not exist).
    """
    rbac.require(principal, Perm.CLUSTER_READ)
    provider = principal.scope.unrestricted
    with deps.uow_factory(principal.scope) as uow:
        clusters = uow.clusters.list()
    if cluster is not None:
        clusters = [c for c in clusters if c.name == cluster]
        if not clusters:
            raise NotFound(f"cluster '{cluster[:40]}' not found")
    counts: dict[str, int] = {}
    try:
        for owned in inventory.view(deps, principal, cluster=cluster).guests:
            counts[owned.cluster.name] = counts.get(owned.cluster.name, 0) + 1
    except BotError:
        pass  # no cluster answered: every line below says so
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="pvebot-clusters") as pool:
        return list(pool.map(lambda c: _one(deps, c, guests=counts.get(c.name, 0), provider=provider,
                                            versions=cluster is not None), clusters))
