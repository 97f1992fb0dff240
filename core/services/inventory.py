"""Which guests a principal may see: Proxmox inventory filtered through pool bindings.

A guest belongs to a company when it sits in a Proxmox pool bound to that company. Guests
in no bound pool belong to nobody and are seen by nobody but a super_admin. A reference that
points outside the caller's scope answers exactly like one that does not exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from core import rbac
from core.errors import BotError, ExternalSystemError, InvalidArguments, NotFound
from core.model import Cluster, Company, Guest
from core.principal import Principal
from core.services.deps import Deps

VMID = re.compile(r"^[1-9][0-9]{2,8}$")  # Proxmox's pve-vmid format
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")


@dataclass(frozen=True)
class OwnedGuest:
    guest: Guest
    cluster: Cluster
    company: Company | None

    @property
    def label(self) -> str:
        return f"{self.guest.name or '(no name)'} ({self.cluster.name}/{self.guest.vmid})"

    @property
    def company_id(self) -> int | None:
        return None if self.company is None else self.company.id


@dataclass(frozen=True)
class View:
    """Everything one principal can see, from one inventory call per cluster."""

    guests: list[OwnedGuest]
    templates: list[OwnedGuest]
    clusters: list[Cluster]
    companies: dict[int, Company]
    # clusters that did not answer, with why: their guests are missing from this view
    unreachable: dict[str, str] = field(default_factory=dict)
    # clusters where a company in scope has a pool: the only ones it can clone into
    pooled_clusters: frozenset[int] = frozenset()


def view(deps: Deps, principal: Principal, *, refresh: bool = False, cluster: str | None = None) -> View:
    """The guests (and usable templates) in ``principal``'s scope, sorted by name.

    Clusters are asked in parallel. One that does not answer leaves its guests out and is named
    in ``View.unreachable``; only when none answers is its error raised.

    Raises:
        PermissionDenied: the role cannot read VMs.
        NotFound: ``cluster`` is not one the principal can see.
        ExternalSystemError: no cluster answered.
    """
    rbac.require(principal, rbac.Perm.VM_READ)
    with deps.uow_factory(principal.scope) as uow:
        clusters = uow.clusters.list()
        bindings = uow.pool_bindings.list()
        companies = {c.id: c for c in uow.companies.list() if c.id is not None}
    if cluster is not None:
        clusters = [c for c in clusters if c.name == cluster]
        if not clusters:
            raise NotFound(f"cluster '{cluster[:40]}' not found")
    owner: dict[tuple[int | None, str], Company | None] = {
        (b.cluster_id, b.pool): companies.get(b.company_id) for b in bindings
    }
    inventories, unreachable = _inventories(deps, clusters, refresh=refresh)
    guests: list[OwnedGuest] = []
    templates: list[OwnedGuest] = []
    for cl in clusters:
        for g in inventories.get(cl.name, []):
            company = owner.get((cl.id, g.pool)) if g.pool else None
            visible = company is not None or principal.scope.unrestricted
            if g.template and (visible or g.vmid in cl.shared_templates):
                templates.append(OwnedGuest(g, cl, company))
            elif visible and not g.template:
                guests.append(OwnedGuest(g, cl, company))
    guests.sort(key=lambda o: (o.guest.name.lower(), o.cluster.name, o.guest.vmid))
    templates.sort(key=lambda o: (o.guest.name.lower(), o.cluster.name, o.guest.vmid))
    return View(guests=guests, templates=templates, clusters=clusters, companies=companies,
                unreachable={name: e.user_message for name, e in unreachable.items()},
                pooled_clusters=frozenset(b.cluster_id for b in bindings))


def _inventories(
    deps: Deps, clusters: list[Cluster], *, refresh: bool
) -> tuple[dict[str, list[Guest]], dict[str, BotError]]:
    def fetch(cl: Cluster) -> list[Guest]:
        return deps.hypervisors.for_cluster(cl).inventory(refresh=refresh)

    found: dict[str, list[Guest]] = {}
    failed: dict[str, BotError] = {}
    if len(clusters) <= 1:
        results = [(cl, _attempt(fetch, cl)) for cl in clusters]
    else:
        # a slow cluster costs its own latency, not the sum of all of them
        with ThreadPoolExecutor(max_workers=min(8, len(clusters)), thread_name_prefix="inventory") as pool:
            results = list(zip(clusters, pool.map(lambda cl: _attempt(fetch, cl), clusters), strict=True))
    for cl, result in results:
        if isinstance(result, BotError):
            failed[cl.name] = result
        else:
            found[cl.name] = result
    if clusters and not found:
        raise next(iter(failed.values()))
    return found, failed


def _attempt(fetch: Callable[[Cluster], list[Guest]], cl: Cluster) -> list[Guest] | BotError:
    try:
        return fetch(cl)
    except BotError as e:
        return e


def resolve(candidates: list[OwnedGuest], ref: str, *, what: str = "VM") -> OwnedGuest:
    """Find one guest by VMID, by a name unique in scope, or by ``cluster/vmid``.

    Raises:
        InvalidArguments: a malformed reference, or one that matches several guests (listed).
        NotFound: nothing in scope matches.
    """
    ref = ref.strip()
    if "/" in ref:
        cluster, _, vmid = ref.partition("/")
        if not VMID.match(vmid):
            raise InvalidArguments(f"'{ref[:40]}' is not a VM reference: VMIDs are 100 to 999999999")
        found = [o for o in candidates if o.cluster.name == cluster and o.guest.vmid == int(vmid)]
    elif ref.isdigit():
        if not VMID.match(ref):
            raise InvalidArguments(f"'{ref[:40]}' is not a valid VMID (100 to 999999999)")
        found = [o for o in candidates if o.guest.vmid == int(ref)]
    else:
        if not _NAME.match(ref):
            raise InvalidArguments(f"'{ref[:40]}' is not a VM name, VMID or cluster/vmid")
        found = [o for o in candidates if o.guest.name.lower() == ref.lower()]
    if not found:
        raise NotFound(f"{what} '{ref[:40]}' not found")
    if len(found) > 1:
        listed = ", ".join(f"{o.cluster.name}/{o.guest.vmid} ({o.guest.name})" for o in found[:10])
        raise InvalidArguments(f"'{ref[:40]}' matches several: {listed}. Use cluster/vmid.")
    return found[0]


def find(deps: Deps, principal: Principal, ref: str, *, refresh: bool = False) -> OwnedGuest:
    """Resolve ``ref`` among the guests ``principal`` can see.

    While a cluster does not answer, only ``cluster/vmid`` references to the others resolve: a
    name or VMID might also stand in the silent cluster, and acting on a namesake is worse than
    asking for the full reference.
    """
    seen = view(deps, principal, refresh=refresh)
    qualified = "/" in ref
    if seen.unreachable and not qualified:
        names = ", ".join(sorted(seen.unreachable))
        raise ExternalSystemError(
            f"cluster {names} is not answering, so '{ref[:40]}' could be there too; name the VM as cluster/vmid"
        )
    if qualified and ref.partition("/")[0] in seen.unreachable:
        cluster = ref.partition("/")[0]
        raise ExternalSystemError(seen.unreachable[cluster])
    return resolve(seen.guests, ref)
