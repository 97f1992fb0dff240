"""``cluster keys push|rotate|health`` as catalog operations, and the key health check the maintenance loop runs.

Push: make pvebot's key (if the cluster has none yet), append its restricted line to the cluster-shared
authorized_keys over the first node (with a password read once from an environment variable when pvebot has
no working key there yet), then log in to every node with it. Rotate: a new key appended, tested on every
node, the old line removed, tested again; any failure before the removal takes the new line back out, so the
old key keeps working throughout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from core.errors import (
    BotError,
    Conflict,
    ExternalSystemError,
    HostKeyMismatch,
    HostKeyUnknown,
    InvalidArguments,
    LoginFailed,
)
from core.model import Cluster, SshKey, SshKeyState, SshNode, Topic
from core.ports import Credentials, Hypervisor
from core.principal import Principal, Scope
from core.rbac import Perm
from core.services import notifications
from core.services.cluster_ssh import ClusterSsh, NodeLine, check_env_name, tools
from core.services.deps import Deps
from core.services.operations import LineSink, Operation, Step, Target
from core.services.provider_targets import CLUSTER, EVERY_CLUSTER, reach

log = logging.getLogger(__name__)


def _say(params: dict[str, Any], line: NodeLine) -> None:
    params.setdefault("lines", []).append(line.show())


def _problem(e: BotError) -> str:
    if isinstance(e, HostKeyMismatch):
        return "🔒 host key changed, refused (nothing sent)"
    if isinstance(e, HostKeyUnknown):
        return "no pinned host key (cluster trust)"
    if isinstance(e, LoginFailed):
        return "login refused"
    return e.user_message[:150]


def _test_all(ssh: ClusterSsh, nodes: list[SshNode], credentials: Credentials, params: dict[str, Any],
              sink: LineSink, *, what: str) -> list[str]:
    """Log in to every node; one line per node; the names of the nodes that failed."""
    failed: list[str] = []
    for node in nodes:
        try:
            ssh.login(node, credentials)
            line = NodeLine(node.node, True, f"{what} works")
        except BotError as e:
            line = NodeLine(node.node, False, _problem(e))
            failed.append(node.node)
        _say(params, line)
        sink(line.show())
    return failed


# ---- push ----------------------------------------------------------------------------------


def _push_prepare(deps: Deps, principal: Principal, target: Target, params: dict[str, Any]) -> None:
    ssh = reach(target)
    env_name = params.get("password_env")
    if env_name:
        # before anything keeps it (the job's parameters), even when the key in place makes it unused
        check_env_name(str(env_name))
    ssh.nodes()  # a cluster without SSH nodes says so now, not in a job
    if ssh.key(SshKeyState.ACTIVE) is None:
        if not env_name:
            raise InvalidArguments(f"pvebot has no key on {target.cluster.name if target.cluster else 'it'} yet: "
                                   "give --password-env VAR naming the variable that holds the root password "
                                   "for this first push")
        ssh.password(str(env_name))  # not set: say so before anything is queued


def _push_steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    ssh = reach(target)
    nodes = ssh.nodes()
    active = ssh.key(SshKeyState.ACTIVE)
    # a first push that failed after appending left its key NEW: push that one again rather than leave its
    # line behind in authorized_keys
    key = active or ssh.key(SshKeyState.NEW) or ssh.new_key()
    login = ssh.credentials(active) if active else ssh.password(str(params.get("password_env") or ""))
    first = nodes[0]

    def append(sink: LineSink) -> None:
        ssh.append(first, login, key)
        sink(f"key line added to the cluster's authorized_keys (through {first.node})")

    def test(sink: LineSink) -> None:
        failed = _test_all(ssh, nodes, ssh.credentials(key), params, sink, what="pvebot's key")
        if failed:
            raise ExternalSystemError(f"pvebot's key does not work on {', '.join(failed)}: "
                                      + "; ".join(params.get("lines", [])))
        if key.state is not SshKeyState.ACTIVE:
            ssh.set_state(key, SshKeyState.ACTIVE)

    yield Step(f"add pvebot's key to {ssh.cluster.name}", stream=append)
    yield Step("log in to every node with it", stream=test)


def _lines(target: Target, params: dict[str, Any]) -> str:
    return f"{target.label}:\n" + "\n".join(params.get("lines", []))


# ---- rotate --------------------------------------------------------------------------------


def _quorate(hv: Hypervisor | None, cluster: Cluster | None) -> None:
    assert hv is not None and cluster is not None
    if not hv.cluster_state().quorate:
        raise Conflict(f"cluster {cluster.name} has no quorum: /etc/pve is read-only, so the key is not "
                       "rotated; the current key keeps working")


def _rotate_check(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> None:
    if reach(target).key(SshKeyState.ACTIVE) is None:
        raise Conflict(f"pvebot has no working key on {target.label} to rotate: `cluster keys push` first")


def _rotate_precheck(deps: Deps, principal: Principal, target: Target, job: Any) -> None:
    hv = deps.hypervisors.for_cluster(target.cluster) if target.cluster else None
    _quorate(hv, target.cluster)
    _rotate_check(hv, target, {})


def _rotate_steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    ssh = reach(target)
    nodes = ssh.nodes()
    old = ssh.key(SshKeyState.ACTIVE)
    assert old is not None, "checked before the job"
    # a NEW key left by a rotation that failed after appending its line is finished, not lost
    new = ssh.key(SshKeyState.NEW) or ssh.new_key()
    first = nodes[0]
    old_login, new_login = ssh.credentials(old), ssh.credentials(new)

    def append(sink: LineSink) -> None:
        ssh.append(first, old_login, new)
        sink(f"new key {new.fingerprint} added")

    def test_new(sink: LineSink) -> None:
        failed = _test_all(ssh, nodes, new_login, params, sink, what="the new key")
        if failed:
            try:
                ssh.remove(first, old_login, new)
                ssh.drop(new)
                undone = "the new key was taken out again; the old key still works"
            except BotError as e:
                undone = f"taking the new key out failed too ({e.user_message}); the old key still works"
            raise ExternalSystemError(f"rotation stopped: the new key does not work on {', '.join(failed)}; {undone}")

    def remove_old(sink: LineSink) -> None:
        ssh.remove(first, new_login, old)
        ssh.set_state(new, SshKeyState.ACTIVE)
        ssh.set_state(old, SshKeyState.RETIRED)
        sink(f"old key {old.fingerprint} removed")

    def test_again(sink: LineSink) -> None:
        params["lines"] = []
        failed = _test_all(ssh, nodes, new_login, params, sink, what="the new key")
        if failed:
            raise ExternalSystemError(f"after removing the old key, the new key fails on {', '.join(failed)}")
        ssh.drop(old)

    yield Step("add the new key", stream=append)
    yield Step("test the new key on every node", stream=test_new)
    yield Step("remove the old key", stream=remove_old)
    yield Step("test every node again", stream=test_again)


# ---- health --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeHealth:
    cluster: str
    node: str
    ok: bool
    problem: str
    # the key's age in days, or None when the cluster has no key
    key_age_days: int | None
    # a changed host key: announced once per fingerprint where it was refused, not again daily here
    announced: bool = False


def _node_health(ssh: ClusterSsh, node: SshNode, key: SshKey | None) -> tuple[bool, str, bool]:
    """(ok, problem, whether the problem was announced already)."""
    if key is None:
        return False, "pvebot has no key on this cluster (cluster keys push)", False
    try:
        if not ssh.listed(node, ssh.credentials(key), key):
            return False, "pvebot's key line is missing from authorized_keys", False
    except BotError as e:
        return False, _problem(e), isinstance(e, HostKeyMismatch)
    return True, "ok", False


def check_cluster(deps: Deps, cluster: Cluster) -> list[NodeHealth]:
    """Log in to every node of ``cluster`` and look for pvebot's line; record and return each node's health."""
    ssh = ClusterSsh(deps, cluster)
    with deps.uow_factory(Scope.everything()) as uow:
        assert cluster.id is not None
        nodes = uow.ssh.nodes(cluster.id)
    if not nodes:
        return []
    key = ssh.key(SshKeyState.ACTIVE)
    age = None if key is None else max(0, (deps.clock.now() - key.created_at).days)
    found: list[NodeHealth] = []
    for node in nodes:
        ok, problem, announced = _node_health(ssh, node, key)
        ssh.record_health(node, problem)
        found.append(NodeHealth(cluster.name, node.node, ok, problem, age, announced))
    return found


def check_all(
    deps: Deps,
    *,
    only: Callable[[Cluster], bool] | None = None,
    each: Callable[[list[NodeHealth]], None] | None = None,
) -> list[NodeHealth]:
    """:func:`check_cluster` for every cluster (``only``: those it admits), ``SshDeps.parallel`` at a time;
    problems become ``updates`` events.

    One cluster that does not answer costs its own timeouts only: the others are checked alongside, and
    ``each`` hears every cluster's nodes as soon as that cluster is done (in the caller's thread).

    Returns:
        Every node's health, in the clusters' order.
    """
    with deps.uow_factory(Scope.everything()) as uow:
        clusters = [c for c in uow.clusters.list() if only is None or only(c)]
    bound = max(1, tools(deps).parallel)
    results: list[list[NodeHealth]] = [[] for _ in clusters]
    with ThreadPoolExecutor(max_workers=bound, thread_name_prefix="pvebot-ssh") as pool:
        futures = {pool.submit(_safe_check, deps, c): i for i, c in enumerate(clusters)}
        for done in as_completed(futures):
            results[futures[done]] = done.result()
            if each is not None:
                each(results[futures[done]])
    found = [h for per_cluster in results for h in per_cluster]
    today = deps.clock.now().strftime("%Y%m%d")
    for h in found:
        if not h.ok and not h.announced:
            # once a day per node and problem: a problem that persists is said again tomorrow, not every sweep
            notifications.publish(deps, notifications.Event(
                topic=Topic.UPDATES, key=f"sshhealth:{h.cluster}:{h.node}:{h.problem[:60]}:{today}", failed=True,
                title=f"🔑 SSH to {h.cluster}/{h.node}: {h.problem}",
                text="pvebot's periodic key health check; `cluster keys health` shows every node"))
    return found


def _safe_check(deps: Deps, cluster: Cluster) -> list[NodeHealth]:
    try:
        return check_cluster(deps, cluster)
    except Exception:
        log.exception("the key health check of cluster %s failed", cluster.name)
        return []


def _health_line(h: NodeHealth) -> str:
    age = "no key" if h.key_age_days is None else f"key {h.key_age_days} d old"
    return f"{'✅' if h.ok else '❌'} {h.cluster}/{h.node}: {h.problem} ({age})"


def _health_steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    deps = target.reach
    assert isinstance(deps, Deps)

    def check(sink: LineSink) -> None:
        def show(per_cluster: list[NodeHealth]) -> None:
            for h in per_cluster:
                sink(_health_line(h))

        # each cluster's lines as soon as it is done: a slow one holds up only its own
        found = check_all(deps, each=show)
        params["lines"] = [_health_line(h) for h in found] or ["no cluster has SSH nodes in its provisioning"]

    yield Step("check every cluster's nodes", stream=check)


def _health_result(target: Target, params: dict[str, Any]) -> str:
    return "SSH key health:\n" + "\n".join(params.get("lines", []))


OPERATIONS: tuple[Operation, ...] = (
    Operation("cluster.keys.push", Perm.CLUSTER_MANAGE, "push pvebot's SSH key to",
              "Put pvebot's SSH key into a cluster's shared authorized_keys and log in to every node with it.",
              CLUSTER, _push_steps, prepare=_push_prepare, result=_lines),
    Operation("cluster.keys.rotate", Perm.CLUSTER_MANAGE, "rotate pvebot's SSH key on",
              "Replace pvebot's SSH key on a cluster without a gap: add, test, remove the old one, test again.",
              CLUSTER, _rotate_steps, check=_rotate_check, precheck=_rotate_precheck, result=_lines),
    Operation("cluster.keys.health", Perm.CLUSTER_MANAGE, "check pvebot's SSH keys on",
              "Log in to every node of every cluster and check pvebot's key and the pinned host keys.",
              EVERY_CLUSTER, _health_steps, result=_health_result),
)
