"""Targets of the provider's own operations: a cluster, one of its nodes, or every cluster.

They belong to no company (:data:`core.services.operations.PROVIDER_COMPANY_ID`): a company's principal is
answered "not found", exactly as for a cluster that does not exist.
"""

from __future__ import annotations

from typing import Any

from core.errors import ConfigurationError, InvalidArguments, NotFound
from core.model import Cluster
from core.principal import Principal, Scope
from core.services.cluster_ssh import ClusterSsh
from core.services.deps import Deps
from core.services.operations import Target, TargetKind


def _cluster(deps: Deps, principal: Principal, name: str) -> Cluster:
    # provider infrastructure: only an unrestricted principal may name it at all
    if not principal.scope.unrestricted:
        raise NotFound(f"cluster '{name[:40]}' not found")
    with deps.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name(name)
    if cluster is None:
        raise NotFound(f"cluster '{name[:40]}' not found")
    return cluster


def _reach(deps: Deps, cluster: Cluster) -> ClusterSsh | None:
    return ClusterSsh(deps, cluster) if deps.ssh is not None else None


def reach(target: Target) -> ClusterSsh:
    """The target's SSH access (the resolver made it); a process without SSH set up cannot run the step."""
    if not isinstance(target.reach, ClusterSsh):
        raise ConfigurationError("SSH to clusters is not set up in this pvebot process")
    return target.reach


def split_node(ref: str) -> tuple[str, str]:
    """``lab/pve1`` to ("lab", "pve1")."""
    cluster, sep, node = ref.strip().partition("/")
    if not sep or not cluster or not node or "/" in node:
        raise InvalidArguments("name a node as <cluster>/<node>, e.g. lab/pve1")
    return cluster, node


class ClusterTarget:
    kind = TargetKind.CLUSTER

    def resolve(self, deps: Deps, principal: Principal, ref: str) -> Target:
        cluster = _cluster(deps, principal, ref)
        record = {"cluster": cluster.name, "detail": f"cluster {cluster.name}"}
        return Target(kind=self.kind, label=f"cluster {cluster.name}", company=None, record=record,
                      cluster=cluster, provider=True, reach=_reach(deps, cluster))

    def recheck(self, deps: Deps, principal: Principal, record: dict[str, Any], *, company_id: int,
                fresh: bool) -> Target:
        return self.resolve(deps, principal, str(record["cluster"]))

    def replaced(self, deps: Deps, target: Target) -> str | None:
        return None


class NodeTarget:
    kind = TargetKind.NODE

    def resolve(self, deps: Deps, principal: Principal, ref: str) -> Target:
        cluster_name, node = split_node(ref)
        cluster = _cluster(deps, principal, cluster_name)
        with deps.uow_factory(Scope.everything()) as uow:
            assert cluster.id is not None
            if not any(n.node == node for n in uow.ssh.nodes(cluster.id)):
                raise NotFound(f"node {cluster.name}/{node[:40]} not found (not in the cluster's ssh nodes)")
        return Target(kind=self.kind, label=f"{cluster.name}/{node}", company=None,
                      record={"cluster": cluster.name, "node": node, "detail": f"node {cluster.name}/{node}"},
                      cluster=cluster, provider=True,
                      reach=_reach(deps, cluster))

    def recheck(self, deps: Deps, principal: Principal, record: dict[str, Any], *, company_id: int,
                fresh: bool) -> Target:
        return self.resolve(deps, principal, f"{record['cluster']}/{record['node']}")

    def replaced(self, deps: Deps, target: Target) -> str | None:
        return None


class EveryCluster:
    """All clusters at once (``cluster keys health``)."""

    kind = TargetKind.CLUSTER

    def resolve(self, deps: Deps, principal: Principal, ref: str) -> Target:
        if not principal.scope.unrestricted:
            raise NotFound("cluster not found")
        # the steps work on the ports themselves: which clusters there are is read when the job runs
        return Target(kind=self.kind, label="every cluster", company=None, record={"cluster": "*"}, provider=True,
                      reach=deps)

    def recheck(self, deps: Deps, principal: Principal, record: dict[str, Any], *, company_id: int,
                fresh: bool) -> Target:
        return self.resolve(deps, principal, "*")

    def replaced(self, deps: Deps, target: Target) -> str | None:
        return None


CLUSTER = ClusterTarget()
NODE = NodeTarget()
EVERY_CLUSTER = EveryCluster()
