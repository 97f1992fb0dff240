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
from core.guest_index import GuestIndex
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


@dataclass(frozen=True)
class _Owners:
    """Who owns what, as far as one principal may know: its clusters, companies and pool bindings."""

    clusters: list[Cluster]
    companies: dict[int, Company]
    # (cluster id, pool) -> the company bound to it; only bindings in the principal's scope are here
    by_pool: dict[tuple[int | None, str], Company | None]

    def company(self, cluster: Cluster, guest: Guest) -> Company | None:
        return self.by_pool.get((cluster.id, guest.pool)) if guest.pool else None

    def pools_on(self, cluster: Cluster) -> list[str]:
        return [pool for (cluster_id, pool), company in self.by_pool.items()
                if cluster_id == cluster.id and company is not None]


def _owners(deps: Deps, principal: Principal) -> _Owners:
    # one unit of work; the repositories filter by the principal's scope, so another company's
    # bindings are not here to be looked at
    cache = deps.directory_cache
    if cache is not None:
        kept = cache.get(cache.pin(), ("owners", principal.scope))
        if isinstance(kept, _Owners):
            return kept
    with deps.uow_factory(principal.scope) as uow:
        version = uow.directory_version() if cache is not None else None
        kept = cache.get(version, ("owners", principal.scope)) if cache is not None else None
        if isinstance(kept, _Owners):
            return kept
        clusters = uow.clusters.list()
        bindings = uow.pool_bindings.list()
        companies = {c.id: c for c in uow.companies.list() if c.id is not None}
    by_pool: dict[tuple[int | None, str], Company | None] = {
        (b.cluster_id, b.pool): companies.get(b.company_id) for b in bindings
    }
    owners = _Owners(clusters=clusters, companies=companies, by_pool=by_pool)
    if cache is not None:
        cache.put(version, ("owners", principal.scope), owners)
    return owners


def _sort_key(o: OwnedGuest) -> tuple[str, str, int]:
    return o.guest.name.lower(), o.cluster.name, o.guest.vmid


def view(deps: Deps, principal: Principal, *, refresh: bool = False, cluster: str | None = None) -> View:
    """The guests (and usable templates) in ``principal``'s scope, sorted by name.

    Clusters are asked in parallel. One that does not answer leaves its guests out and is named
    in ``View.unreachable``; only when none answers is its error raised. A scoped principal's
    guests are read from its pools in each cluster's index: other companies' guests are not
    looked at, so the cost follows the size of the company, not of the cluster.

    Raises:
        PermissionDenied: the role cannot read VMs.
        NotFound: ``cluster`` is not one the principal can see.
        ExternalSystemError: no cluster answered.
    """
    rbac.require(principal, rbac.Perm.VM_READ)
    owners = _owners(deps, principal)
    clusters = owners.clusters
    if cluster is not None:
        clusters = [c for c in clusters if c.name == cluster]
        if not clusters:
            raise NotFound(f"cluster '{cluster[:40]}' not found")
    indexes, unreachable = _indexes(deps, clusters, refresh=refresh)
    everything = principal.scope.unrestricted
    guests: list[OwnedGuest] = []
    templates: list[OwnedGuest] = []
    for cl in clusters:
        index = indexes.get(cl.name)
        if index is None:
            continue
        pools = index.pools() if everything else owners.pools_on(cl)
        for pool in pools:
            for g in index.in_pool(pool):
                guests.append(OwnedGuest(g, cl, owners.company(cl, g)))
        for g in index.templates:
            company = owners.company(cl, g)
            if company is not None or everything or g.vmid in cl.shared_templates:
                templates.append(OwnedGuest(g, cl, company))
    guests.sort(key=_sort_key)
    templates.sort(key=_sort_key)
    return View(guests=guests, templates=templates, clusters=clusters, companies=owners.companies,
                unreachable={name: e.user_message for name, e in unreachable.items()},
                pooled_clusters=frozenset(cid for (cid, _pool) in owners.by_pool if cid is not None))


def _indexes(
    deps: Deps, clusters: list[Cluster], *, refresh: bool
) -> tuple[dict[str, GuestIndex], dict[str, BotError]]:
    def fetch(cl: Cluster) -> GuestIndex:
        return deps.hypervisors.for_cluster(cl).index(refresh=refresh)

    found: dict[str, GuestIndex] = {}
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


def _attempt(fetch: Callable[[Cluster], GuestIndex], cl: Cluster) -> GuestIndex | BotError:
    try:
        return fetch(cl)
    except BotError as e:
        return e


def _parse(ref: str) -> tuple[str | None, int | None, str | None]:
    """``ref`` as (cluster, vmid, name), whichever it names; refuses what can name nothing."""
    if "/" in ref:
        cluster, _, vmid = ref.partition("/")
        if not VMID.match(vmid):
            raise InvalidArguments(f"'{ref[:40]}' is not a VM reference: VMIDs are 100 to 999999999")
        return cluster, int(vmid), None
    if ref.isdigit():
        if not VMID.match(ref):
            raise InvalidArguments(f"'{ref[:40]}' is not a valid VMID (100 to 999999999)")
        return None, int(ref), None
    if not _NAME.match(ref):
        raise InvalidArguments(f"'{ref[:40]}' is not a VM name, VMID or cluster/vmid")
    return None, None, ref


def resolve(candidates: list[OwnedGuest], ref: str, *, what: str = "VM") -> OwnedGuest:
    """Find one guest by VMID, by a name unique in scope, or by ``cluster/vmid``.

    Raises:
        InvalidArguments: a malformed reference, or one that matches several guests (listed).
        NotFound: nothing in scope matches.
    """
    ref = ref.strip()
    cluster, vmid, name = _parse(ref)
    if name is not None:
        found = [o for o in candidates if o.guest.name.lower() == name.lower()]
    else:
        found = [o for o in candidates if o.guest.vmid == vmid and cluster in (None, o.cluster.name)]
    if not found:
        raise NotFound(f"{what} '{ref[:40]}' not found")
    if len(found) > 1:
        listed = ", ".join(f"{o.cluster.name}/{o.guest.vmid} ({o.guest.name})" for o in found[:10])
        raise InvalidArguments(f"'{ref[:40]}' matches several: {listed}. Use cluster/vmid.")
    return found[0]


def find(deps: Deps, principal: Principal, ref: str, *, refresh: bool = False) -> OwnedGuest:
    """Resolve ``ref`` among the guests ``principal`` can see, through each cluster's index.

    Only the guests that match the reference are looked at and wrapped, so a command costs the
    same however many guests the clusters hold. A ``cluster/vmid`` reference asks that cluster only.

    While a cluster does not answer, only ``cluster/vmid`` references to the others resolve: a
    name or VMID might also stand in the silent cluster, and acting on a namesake is worse than
    asking for the full reference.

    Raises:
        PermissionDenied: the role cannot read VMs.
        InvalidArguments: a malformed reference, or one that matches several guests.
        NotFound: nothing in scope matches (out of scope answers exactly the same).
        ExternalSystemError: a cluster that could hold the guest did not answer.
    """
    rbac.require(principal, rbac.Perm.VM_READ)
    owners = _owners(deps, principal)
    ref = ref.strip()
    qualified = "/" in ref
    clusters = owners.clusters
    if qualified:
        clusters = [c for c in clusters if c.name == ref.partition("/")[0]]
    indexes, unreachable = _indexes(deps, clusters, refresh=refresh)
    if unreachable and not qualified:
        names = ", ".join(sorted(unreachable))
        raise ExternalSystemError(
            f"cluster {names} is not answering, so '{ref[:40]}' could be there too; name the VM as cluster/vmid"
        )
    cluster, vmid, name = _parse(ref)
    everything = principal.scope.unrestricted
    found: list[OwnedGuest] = []
    for cl in clusters:
        index = indexes[cl.name]
        if name is not None:
            # a company looks in its own pools: other companies' guests are never even named
            matches: tuple[Guest, ...] = index.named(name, pools=None if everything else owners.pools_on(cl))
        else:
            assert vmid is not None
            by_vmid = index.by_vmid(vmid)
            matches = () if by_vmid is None or by_vmid.template else (by_vmid,)
        for g in matches:
            company = owners.company(cl, g)
            if company is not None or everything:
                found.append(OwnedGuest(g, cl, company))
    found.sort(key=_sort_key)
    return resolve(found, ref)
