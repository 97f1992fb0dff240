"""The provider's SSH administration that is not a queued operation: which clusters, and host key pins."""

from __future__ import annotations

import re
from dataclasses import dataclass

from core import rbac
from core.errors import InvalidArguments, NotFound
from core.principal import Principal, Scope
from core.rbac import Perm
from core.services import cluster_ssh
from core.services.cluster_ssh import ClusterSsh
from core.services.deps import Deps

FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")


def cluster_names(deps: Deps, principal: Principal) -> list[str]:
    """The clusters with SSH nodes in their provisioning (the ``--all`` forms work on these)."""
    rbac.require(principal, Perm.CLUSTER_MANAGE)
    with deps.uow_factory(Scope.everything()) as uow:
        return [c.name for c in uow.clusters.list() if c.id is not None and uow.ssh.nodes(c.id)]


@dataclass(frozen=True)
class Trusted:
    # what the node shows now, the pin before, and whether the pin changed
    seen: str
    pinned: str | None
    changed: bool


def trust(deps: Deps, principal: Principal, *, cluster: str, node: str, fingerprint: str | None) -> Trusted:
    """Show the host key a node presents (no fingerprint), or pin ``fingerprint`` if the node shows exactly it.

    Only the handshake is made: nothing is authenticated or run.

    Raises:
        PermissionDenied: the role may not manage clusters.
        NotFound: no such cluster or node.
        InvalidArguments: a malformed fingerprint, or one the node does not show (nothing is pinned).
    """
    rbac.require(principal, Perm.CLUSTER_MANAGE)
    if fingerprint is not None and not FINGERPRINT.match(fingerprint):
        raise InvalidArguments("a fingerprint looks like SHA256: and 43 characters, as `ssh-keygen -lf` prints it")
    with deps.uow_factory(Scope.everything()) as uow:
        found = uow.clusters.by_name(cluster)
    if found is None:
        raise NotFound(f"cluster '{cluster[:40]}' not found")
    ssh = ClusterSsh(deps, found)
    current = ssh.node(node)
    if fingerprint is None:
        seen = ssh.tools.shell.host_key(ssh.target(current))
        return Trusted(seen=seen, pinned=current.host_key, changed=False)
    before, changed = cluster_ssh.pin(deps, found, node, fingerprint, actor=principal.actor)
    return Trusted(seen=fingerprint, pinned=before, changed=changed)
