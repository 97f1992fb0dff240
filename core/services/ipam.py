"""Company IP ranges: what a company may see of them, and handing out their addresses exactly once.

Allocation reads the taken addresses, picks the lowest free one and inserts it; the database's unique
key on (range, address) refuses the second of two concurrent inserts of the same address, and the
loser simply tries again with a fresh read. Every read and write goes through the caller's scope, so
another company's ranges answer like ranges that do not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from core import rbac
from core.errors import Conflict, DuplicateRequest, InvalidArguments, NotFound
from core.model import IpAssignment, IpRange
from core.ports import NicAddress
from core.principal import Principal, Scope
from core.services import addresses, audit
from core.services.deps import Deps

# Each failed attempt means another allocation of the same address won, so this bounds the retries of a
# request racing that many others, not the work of one
MAX_ATTEMPTS = 64


@dataclass(frozen=True)
class RangeUsage:
    range: IpRange
    cluster: str
    used: int
    capacity: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used)


def ranges(deps: Deps, principal: Principal) -> list[RangeUsage]:
    """The ranges in the principal's scope, each with how many addresses are used and free.

    Raises:
        PermissionDenied: the role cannot read networks.
    """
    rbac.require(principal, rbac.Perm.NET_READ)
    with deps.uow_factory(principal.scope) as uow:
        clusters = {c.id: c.name for c in uow.clusters.list()}
        out = []
        for rng in uow.ip_ranges.list():
            assert rng.id is not None
            used = uow.ip_assignments.count(rng.id)
            out.append(RangeUsage(rng, clusters.get(rng.cluster_id, "?"), used, addresses.capacity(rng)))
    return out


def show(deps: Deps, principal: Principal, name: str) -> tuple[RangeUsage, list[IpAssignment]]:
    """One range, by name or by its network, and what is assigned from it.

    Raises:
        NotFound: no such range in the principal's scope (another company's answers alike).
        InvalidArguments: a malformed network, or one that several of the principal's ranges have.
    """
    rbac.require(principal, rbac.Perm.NET_READ)
    visible = ranges(deps, principal)
    network = addresses.network_named(name)
    if network is not None:
        found = [u for u in visible if addresses.network(u.range) == network]
        if len(found) > 1:
            # a salesperson's two companies may both use 10.0.0.0/24 (private networks repeat)
            names = ", ".join(sorted(_qualified(deps, principal, u.range) for u in found))
            raise InvalidArguments(f"{network} is the network of several ranges: {names}; name one of them")
    else:
        found = [u for u in visible if u.range.name == name]
        if len(found) != 1:
            # two companies of a salesperson may both name a range "prod"; ask for company/name then
            found = [u for u in visible if _qualified(deps, principal, u.range) == name] or found[:0]
    if len(found) != 1:
        raise NotFound(f"range '{name[:64]}' not found")
    usage = found[0]
    with deps.uow_factory(principal.scope) as uow:
        assert usage.range.id is not None
        return usage, uow.ip_assignments.for_range(usage.range.id)


def _qualified(deps: Deps, principal: Principal, rng: IpRange) -> str:
    with deps.uow_factory(principal.scope) as uow:
        company = uow.companies.get(rng.company_id)
    return f"{company.slug if company else '?'}/{rng.name}"


def choose_range(
    deps: Deps, principal: Principal, *, company_id: int, cluster_id: int, name: str | None, address: str | None
) -> IpRange:
    """The range to take an address from for a guest of ``company_id`` on ``cluster_id``.

    Raises:
        NotFound: no such range in that company (or not on that cluster); another company's answers alike.
        InvalidArguments: several ranges fit and none was named, or the address is in none of them.
    """
    rbac.require(principal, rbac.Perm.IP_ASSIGN, company_id, what="VM")
    with deps.uow_factory(principal.scope) as uow:
        mine = [r for r in uow.ip_ranges.list() if r.company_id == company_id and r.cluster_id == cluster_id]
    if name is not None:
        network = addresses.network_named(name)
        named = [r for r in mine if (addresses.network(r) == network if network is not None else r.name == name)]
        if not named:
            raise NotFound(f"range '{name[:64]}' not found on the VM's cluster")
        mine = named
    if address is not None:
        holding = addresses.containing(mine, addresses.number_of(address))
        if not holding:
            raise InvalidArguments(f"{address} is in none of your company's ranges on the VM's cluster")
        mine = holding
    if not mine:
        raise NotFound("your company has no IP range on the VM's cluster")
    if len(mine) > 1:
        raise InvalidArguments(f"name the range with --range: {', '.join(sorted(r.name for r in mine))}")
    return mine[0]


def allocate(
    deps: Deps,
    principal: Principal,
    *,
    rng: IpRange,
    vmid: int | None,
    nic: int,
    address: str | None = None,
    label: str,
) -> IpAssignment:
    """Take the lowest free address of ``rng`` (or ``address``) for NIC ``nic`` of guest ``vmid``.

    ``vmid`` None holds the address for a guest not created yet (:func:`bind` gives it to it).

    Raises:
        Conflict: the range is full, the address is taken, or the NIC has an address from pvebot already.
        InvalidArguments: ``address`` is not one the range hands out.
    """
    rbac.require(principal, rbac.Perm.IP_ASSIGN, rng.company_id, what="range")
    assert rng.id is not None
    wanted = addresses.number_of(address) if address is not None else None
    if wanted is not None and not addresses.is_assignable(rng, wanted):
        raise InvalidArguments(f"{address} is not one range {rng.name} hands out (the network, broadcast, "
                               "gateway and reserved addresses are not)")
    for _ in range(MAX_ATTEMPTS):
        with deps.uow_factory(principal.scope) as uow:
            if vmid is not None:
                held = [a for a in uow.ip_assignments.for_guest(rng.cluster_id, vmid) if a.nic == nic]
                if held:
                    raise Conflict(f"{label} net{nic} has {held[0].address} from pvebot already; release it first")
            range_id = rng.id
            if wanted is not None:
                if uow.ip_assignments.first_free(range_id, wanted) != wanted:
                    raise Conflict(f"{address} is assigned already; leave out --ip for the next free address")
                number: int | None = wanted
            else:
                number = addresses.lowest_free_with(rng, partial(uow.ip_assignments.first_free, range_id))
            if number is None:
                raise Conflict(f"range {rng.name} is full: all {addresses.capacity(rng)} addresses are assigned")
            assignment = IpAssignment(
                range_id=rng.id, company_id=rng.company_id, address=addresses.text_of(number), number=number,
                cluster_id=rng.cluster_id, vmid=vmid, nic=nic, assigned_by=principal.actor,
                assigned_at=deps.clock.now(),
            )
            try:
                uow.ip_assignments.add(assignment)
                audit.record(uow, clock=deps.clock, actor=principal.actor, action="ip.assigned",
                             company_id=rng.company_id, target=f"{assignment.address} -> {label} net{nic}",
                             detail={"range": rng.name})
                uow.commit()
                return assignment
            except DuplicateRequest:
                # someone took this address (or this NIC) between our read and our insert: read again
                uow.rollback()
    raise Conflict(f"range {rng.name} is busy; try again in a moment")


def nic_address(rng: IpRange, assignment: IpAssignment) -> NicAddress:
    """What the guest's NIC is set to for ``assignment``."""
    prefix = addresses.network(rng).prefixlen
    return NicAddress(nic=assignment.nic, address=f"{assignment.address}/{prefix}", gateway=rng.gateway,
                      bridge=rng.vnet or rng.bridge, vlan=None if rng.vnet else rng.vlan, dns=tuple(rng.dns),
                      search_domain=rng.search_domain)


def job_params(rng: IpRange, assignment: IpAssignment) -> dict[str, Any]:
    """The assignment as a job carries it (primitives only)."""
    change = nic_address(rng, assignment)
    return {"assignment_id": assignment.id, "range": rng.name, "address": assignment.address, "nic": change.nic,
            "cidr": change.address, "gateway": change.gateway, "bridge": change.bridge, "vlan": change.vlan,
            "dns": list(change.dns), "search_domain": change.search_domain}


def from_params(params: dict[str, Any]) -> NicAddress:
    return NicAddress(nic=int(params["nic"]), address=params["cidr"], gateway=params.get("gateway"),
                      bridge=params.get("bridge"), vlan=params.get("vlan"), dns=tuple(params.get("dns") or ()),
                      search_domain=params.get("search_domain"))


def release_ids(deps: Deps, *, company_id: int, ids: list[int], why: str) -> list[str]:
    """Give back the assignments ``ids`` of ``company_id``; returns the addresses released now."""
    released = []
    with deps.uow_factory(_scope(company_id)) as uow:
        for assignment_id in ids:
            found = uow.ip_assignments.get(assignment_id)
            address = found.address if found is not None else None
            if address is not None and uow.ip_assignments.release(assignment_id):
                released.append(address)
                audit.record(uow, clock=deps.clock, actor="system", action="ip.released", company_id=company_id,
                             target=address, detail={"why": why})
        uow.commit()
    return released


def release_guest(deps: Deps, *, company_id: int, cluster_id: int, vmid: int, why: str) -> list[str]:
    """Give back every address a guest holds (it was deleted)."""
    with deps.uow_factory(_scope(company_id)) as uow:
        ids = [a.id for a in uow.ip_assignments.for_guest(cluster_id, vmid) if a.id is not None]
    return release_ids(deps, company_id=company_id, ids=ids, why=why)


def bind(deps: Deps, *, company_id: int, assignment_id: int, vmid: int) -> bool:
    """Give an address held for a guest being created to that guest, now that it has a VMID."""
    with deps.uow_factory(_scope(company_id)) as uow:
        bound = uow.ip_assignments.bind(assignment_id, vmid=vmid)
        uow.commit()
    return bound


def _scope(company_id: int) -> Scope:
    return Scope.of(company_id)
