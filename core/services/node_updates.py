"""Package updates on cluster nodes: what is available, the periodic check, and ``node upgrade``.

The list comes from the API (``GET /nodes/{node}/apt/update``, the cache of the node's last ``apt-get
update``); installing cannot be done through the API, so ``node upgrade`` runs ``apt-get update`` and a
non-interactive ``dist-upgrade`` over SSH, its output streamed as the job's progress.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from core import rbac
from core.errors import BotError, Conflict, ExternalSystemError, NotFound
from core.ids import new_id, show_job
from core.model import Cluster, JobState, PackageUpdate, Topic
from core.ports import Hypervisor
from core.principal import Principal, Scope
from core.rbac import Perm
from core.services import notifications
from core.services.cluster_ssh import tools
from core.services.deps import Deps
from core.services.operations import Ended, LineSink, Operation, Step, Target
from core.services.provider_targets import CLUSTER, NODE, reach, split_node

log = logging.getLogger(__name__)

APT_UPDATE = "DEBIAN_FRONTEND=noninteractive apt-get update"
# keep the node's changed config files and never ask: a prompt would hang the job until its timeout
DIST_UPGRADE = ("DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::=--force-confdef "
                "-o Dpkg::Options::=--force-confold dist-upgrade")
# dpkg must not die half-way because the SSH session did (a network blip, the job's deadline, a
# worker restart): the upgrade runs in a session of its own, writing to a log on the node that the
# SSH command follows; when the session goes the upgrade goes on, and the log says how it ended
UPGRADE_LOG = "$HOME/.pvebot-upgrade.log"


def detached(command: str) -> str:
    """``command`` run apart from the SSH session, its output streamed from the log and its exit status kept."""
    return (f'log="{UPGRADE_LOG}"; : > "$log"; setsid -w sh -c \'{command} >> "$1" 2>&1\' sh "$log" '
            '< /dev/null & pid=$!; tail -n +1 --pid="$pid" -F "$log" 2>/dev/null; wait "$pid"')


# Whether the node must reboot to run what was installed: Debian's flag file, which some packages
# leave (Proxmox's kernels do not); or a kernel to boot that is not the running one: the pinned one
# (proxmox-boot-tool kernel pin), else the newest installed. PVEBOT_NODE_ROOT (unset on a node) lets
# the tests' sshd stand a directory in for /.
REBOOT_CHECK = (
    'r="${PVEBOT_NODE_ROOT:-}"; running="$(uname -r)"; '
    'boot="$(cat "$r/etc/kernel/proxmox-boot-pin" 2>/dev/null)"; '
    '[ -n "$boot" ] || boot="$(ls "$r/boot" 2>/dev/null | sed -n "s/^vmlinuz-//p" | sort -V | tail -n 1)"; '
    'if [ -e "$r/run/reboot-required" ]; then echo "reboot-required packages"; '
    'elif [ -n "$boot" ] && [ "$boot" != "$running" ]; then echo "reboot-required kernel $boot $running"; '
    "else echo no-reboot; fi"
)


def reboot_reason(output: Iterable[str]) -> str | None:
    """What :data:`REBOOT_CHECK` printed, in words; None when no reboot is needed."""
    for line in output:
        words = line.split()
        if words[:1] != ["reboot-required"]:
            continue
        if words[1:2] == ["kernel"] and len(words) == 4:
            return f"kernel {words[2]} is installed, {words[3]} runs"
        return "packages ask for it"
    return None


def sorted_updates(updates: list[PackageUpdate]) -> list[PackageUpdate]:
    """Proxmox packages first, then by name."""
    return sorted(updates, key=lambda u: (not u.proxmox, u.package))


def available(deps: Deps, principal: Principal, ref: str) -> tuple[str, list[PackageUpdate]]:
    """The updates available on a node, Proxmox packages first: any node of the cluster the API knows
    (no SSH needed to list them, as the periodic check announces them).

    Returns:
        The node as ``cluster/node``, and its updates.

    Raises:
        NotFound: no such cluster or node, or the principal is not the provider's (a company's answers alike).
        PermissionDenied: the role may not manage clusters.
        InvalidArguments: ``ref`` is not ``cluster/node``.
    """
    rbac.require(principal, Perm.CLUSTER_MANAGE)
    cluster_name, node = split_node(ref)
    cluster = CLUSTER.resolve(deps, principal, cluster_name).cluster
    assert cluster is not None
    hv = deps.hypervisors.for_cluster(cluster)
    if node not in {n.name for n in hv.cluster_state().nodes}:
        raise NotFound(f"node {cluster.name}/{node[:40]} not found")
    return f"{cluster.name}/{node}", sorted_updates(hv.apt_updates(node))


def updates_key(cluster: str, node: str, updates: list[PackageUpdate]) -> str:
    """The same set of versions gives the same key, so it is announced once."""
    digest = hashlib.sha256("\n".join(sorted(f"{u.package}={u.version}" for u in updates)).encode()).hexdigest()
    return f"updates:{cluster}:{node}:{digest[:20]}"


def _announce(cluster: str, node: str, updates: list[PackageUpdate]) -> notifications.Event:
    ordered = sorted_updates(updates)
    proxmox = sum(1 for u in ordered if u.proxmox)
    shown = "\n".join(f"{u.package} {u.old_version or '?'} → {u.version}" for u in ordered[:25])
    more = f"\n… and {len(ordered) - 25} more" if len(ordered) > 25 else ""
    return notifications.Event(topic=Topic.UPDATES, key=updates_key(cluster, node, ordered),
                               title=f"📦 {len(ordered)} updates on {cluster}/{node} ({proxmox} Proxmox)",
                               text=shown + more + f"\n`node upgrade {cluster}/{node}` installs them")


def check_cluster(deps: Deps, cluster: Cluster) -> int:
    """Announce each online node's available updates (a set already announced is not again) and a node
    running a new Proxmox VE version; how many messages were queued."""
    hv = deps.hypervisors.for_cluster(cluster)
    return sum(check_node(deps, cluster, node.name) for node in hv.cluster_state().nodes if node.online)


def check_node(deps: Deps, cluster: Cluster, node: str) -> int:
    """:func:`check_cluster` for one node (a node's webhook said it has news); how many messages were queued."""
    hv = deps.hypervisors.for_cluster(cluster)
    queued = 0
    updates = hv.apt_updates(node)
    if updates:
        queued += notifications.publish(deps, _announce(cluster.name, node, updates))
    return queued + _check_version(deps, cluster, node, hv.proxmox_version(node))


def _check_version(deps: Deps, cluster: Cluster, node: str, version: str | None) -> int:
    if version is None or cluster.id is None:
        return 0
    with deps.uow_factory(Scope.everything()) as uow:
        before = uow.event_sources.node_version(cluster.id, node)
        if before == version:
            return 0
        uow.event_sources.set_node_version(cluster.id, node, version)
        queued = 0
        # what a node runs when first seen is no news; a change is, once (its version is in the key)
        if before is not None:
            queued = notifications.record(uow, notifications.Event(
                topic=Topic.UPDATES, key=f"pveversion:{cluster.name}:{node}:{version}",
                title=f"🆕 {cluster.name}/{node} now runs Proxmox VE {version} (was {before})"[:300]), clock=deps.clock)
        uow.commit()
    return queued


def check_all(deps: Deps, *, only: Callable[[Cluster], bool] | None = None) -> int:
    """:func:`check_cluster` for every cluster (``only``: those it admits); one that fails is logged and the
    others still checked."""
    with deps.uow_factory(Scope.everything()) as uow:
        clusters = [c for c in uow.clusters.list() if only is None or only(c)]
    queued = 0
    for cluster in clusters:
        try:
            queued += check_cluster(deps, cluster)
        except BotError as e:
            log.warning("the updates check of cluster %s failed: %s", cluster.name, e.user_message)
    return queued


# ---- node upgrade --------------------------------------------------------------------------


def _upgrading(deps: Deps, target: Target, *, besides: str | None = None) -> str | None:
    """The job already upgrading (or queued to upgrade) the node, if any."""
    with deps.uow_factory(Scope.everything()) as uow:
        for job in uow.jobs.list(states=(JobState.QUEUED, JobState.RUNNING), limit=500):
            if (job.action == "node.upgrade" and job.id != besides and job.target.get("cluster") ==
                    target.record["cluster"] and job.target.get("node") == target.record["node"]):
                return job.id
    return None


def _refuse_second(deps: Deps, target: Target, *, besides: str | None = None) -> None:
    running = _upgrading(deps, target, besides=besides)
    if running is not None:
        raise Conflict(f"{target.label} is already being upgraded ({show_job(running)}); wait for it to end")


def _prepare(deps: Deps, principal: Principal, target: Target, params: dict[str, Any]) -> None:
    _refuse_second(deps, target)
    reach(target).node(target.record["node"])
    params["upgrade_id"] = new_id(8)


def _precheck(deps: Deps, principal: Principal, target: Target, job: Any) -> None:
    _refuse_second(deps, target, besides=job.id)


def _preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    assert hv is not None
    node = target.record["node"]
    updates = sorted_updates(hv.apt_updates(node))
    packages = ", ".join(f"{u.package} {u.version}" for u in updates[:15]) or "none listed (apt-get update first)"
    if len(updates) > 15:
        packages += f", … {len(updates) - 15} more"
    running = sorted((g for g in hv.inventory() if g.node == node and g.status == "running"), key=lambda g: g.vmid)
    guests = ", ".join(f"{g.name} ({g.vmid})" for g in running[:20]) or "none"
    if len(running) > 20:
        guests += f", … {len(running) - 20} more"
    return [("Packages", f"{len(updates)}: {packages}"), ("Guests running on the node", guests)]


def _steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    ssh = reach(target)
    node = ssh.node(target.record["node"])
    key = ssh.key_for_login()
    login = ssh.credentials(key)
    timeout = tools(ssh.deps).upgrade_timeout

    def command(cmd: str, what: str, *, goes_on: bool = False) -> Step:
        def run(sink: LineSink) -> None:
            try:
                result = ssh.run(node, login, cmd, on_line=sink, timeout=timeout)
            except ExternalSystemError as e:
                if not goes_on:
                    raise
                raise ExternalSystemError(f"{e.user_message}; the upgrade goes on on {target.label} by itself: "
                                          f"its log is {UPGRADE_LOG} there") from e
            if result.exit_status != 0:
                tail = next((line for line in reversed(result.output) if line.strip()), "")
                raise ExternalSystemError(f"{what} on {target.label} failed (exit status {result.exit_status}): "
                                          f"{tail[:200]}")
        return Step(what, stream=run)

    def reboot(sink: LineSink) -> None:
        why = reboot_reason(ssh.run(node, login, REBOOT_CHECK).output)
        params["reboot"] = why is not None
        if why is not None:
            params["reboot_why"] = why
        sink(f"a reboot is required: {why}" if why else "no reboot needed")

    yield command(APT_UPDATE, "apt-get update")
    yield command(detached(DIST_UPGRADE), "apt-get dist-upgrade", goes_on=True)
    yield Step("check whether a reboot is required", stream=reboot)


def _result(target: Target, params: dict[str, Any]) -> str:
    why = params.get("reboot_why")
    after = ("⚠️ a reboot is required" + (f" ({why})" if why else "")) if params.get("reboot") else "no reboot needed"
    return f"upgraded {target.label}; {after}"


def _ended(deps: Deps, ended: Ended) -> None:
    where = f"{ended.target['cluster']}/{ended.target['node']}"
    if ended.succeeded:
        reboot = ended.params.get("reboot")
        title = f"⬆️ {where} upgraded" + ("; ⚠️ reboot required" if reboot else "; no reboot needed")
    else:
        title = f"❌ the upgrade of {where} did not succeed"
    notifications.publish(deps, notifications.Event(
        topic=Topic.UPDATES, key=f"upgrade:{where}:{ended.params.get('upgrade_id', '')}", failed=not ended.succeeded,
        title=title, text="the job's thread has apt's output"))


OPERATIONS: tuple[Operation, ...] = (
    Operation("node.upgrade", Perm.NODE_UPGRADE, "upgrade",
              "Install a node's package updates over SSH (apt-get dist-upgrade), after a second admin approves.",
              NODE, _steps, preview=_preview, prepare=_prepare, precheck=_precheck, result=_result,
              always_approval=True, ended=_ended),
)
