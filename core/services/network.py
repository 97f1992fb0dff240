"""Network requests from chat: assign and release addresses, and list, show and audit ranges.

The address is taken when the request is made, so that "range full" is said at once and two
requests never race for one address inside Proxmox; the job (``ip.assign``) then configures it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core import rbac
from core.chat import ConversationRef
from core.errors import InvalidArguments, NotFound
from core.model import IpAssignment, IpRange, Nic
from core.ports import Hypervisor
from core.principal import Principal
from core.rbac import Perm
from core.services import addresses, inventory, ipam, requests
from core.services.deps import Deps
from core.services.net_operations import parse_nic, reboot_needed
from core.services.targets import GUEST


def assign(
    deps: Deps,
    principal: Principal,
    *,
    vm: str,
    range_name: str | None,
    address: str | None,
    nic: str | None,
    conversation: ConversationRef,
    request_id: str,
) -> tuple[requests.Outcome, dict[str, Any]]:
    """Take an address for a guest's NIC and queue the job that configures it.

    Returns:
        The outcome (a job, or an approval request when the company wants one) and the job's params.

    Raises:
        NotFound: the VM or the range is not in the caller's scope.
        Conflict: the range is full, the address is taken, or the NIC holds one already.
        InvalidArguments: a bad NIC, address, or an ambiguous range.
    """
    index = parse_nic(nic)
    rbac.require(principal, Perm.IP_ASSIGN)
    target = GUEST.resolve(deps, principal, vm)
    assert target.cluster is not None and target.cluster.id is not None and target.guest is not None
    company_id = target.company_id
    assert company_id is not None
    rbac.require(principal, Perm.IP_ASSIGN, company_id, what="VM")
    hv = deps.hypervisors.for_cluster(target.cluster)
    if not any(n.index == index for n in hv.nics(target.guest.ref)):
        raise InvalidArguments(f"{target.label} has no network interface net{index}")
    rng = ipam.choose_range(deps, principal, company_id=company_id, cluster_id=target.cluster.id, name=range_name,
                            address=address)
    _check_bridge(hv, rng.bridge if not rng.vnet else None, target.guest.node, rng.name)
    assignment = ipam.allocate(deps, principal, rng=rng, vmid=target.guest.vmid, nic=index, address=address,
                               label=target.label)
    params = ipam.job_params(rng, assignment)
    params["reboot"] = reboot_needed(target.guest)
    outcome = requests.submit(deps, principal, action="ip.assign", target=target, params=params,
                              conversation=conversation, request_id=request_id,
                              summary=f"assign {assignment.address} to {target.label} net{index}")
    if not outcome.created:
        # a re-delivery: the first delivery's request holds its own address; this one is not needed
        ipam.release_ids(deps, company_id=company_id, ids=[assignment.id or 0], why="duplicate request")
    return outcome, params


def _check_bridge(hv: Hypervisor, bridge: str | None, node: str, range_name: str) -> None:
    if bridge is not None and bridge not in hv.bridges(node):
        raise InvalidArguments(f"bridge {bridge} of range {range_name} does not exist on node {node}; "
                               "ask your administrator")


def release(
    deps: Deps,
    principal: Principal,
    *,
    vm: str,
    address: str | None,
    reason: str,
    conversation: ConversationRef,
    request_id: str,
) -> requests.Outcome:
    """Ask to take the guest's addresses (or one) off it and give them back to their ranges.

    Raises:
        NotFound: the VM is not in the caller's scope, or holds no such address from pvebot.
    """
    rbac.require(principal, Perm.IP_RELEASE)
    target = GUEST.resolve(deps, principal, vm)
    assert target.cluster is not None and target.cluster.id is not None and target.guest is not None
    rbac.require(principal, Perm.IP_RELEASE, target.company_id, what="VM")
    with deps.uow_factory(principal.scope) as uow:
        held = uow.ip_assignments.for_guest(target.cluster.id, target.guest.vmid)
    if address is not None:
        addresses.number_of(address)
        held = [a for a in held if a.address == address]
    if not held:
        raise NotFound(f"{target.label} holds no address{' ' + address if address else ''} from pvebot")
    shown = [a.address for a in held]
    params: dict[str, Any] = {"assignment_ids": [a.id for a in held], "addresses": shown,
                              "nics": [a.nic for a in held]}
    return requests.submit(deps, principal, action="ip.release", target=target, params=params, reason=reason,
                           conversation=conversation, request_id=request_id,
                           summary=f"release {', '.join(shown)} from {target.label}")


@dataclass(frozen=True)
class Drift:
    """One difference between what pvebot assigned and what a guest's config says."""

    vm: str
    nic: int
    problem: str


def audit(deps: Deps, principal: Principal) -> tuple[list[Drift], list[str]]:
    """Compare pvebot's assignments with the configs of the guests in the principal's scope.

    Finds an address configured on a guest but not assigned to it, one assigned but not configured, a
    VLAN tag other than its range's, and addresses held for guests that are gone.

    Returns:
        The drift found, and why clusters that did not answer were left out.

    Raises:
        PermissionDenied: the role may not audit.
    """
    rbac.require(principal, Perm.NET_AUDIT)
    view = inventory.view(deps, principal, refresh=True)
    with deps.uow_factory(principal.scope) as uow:
        ranges = {r.id: r for r in uow.ip_ranges.list()}
        held: dict[tuple[int, int | None], list[IpAssignment]] = {}
        for a in uow.ip_assignments.for_company():
            held.setdefault((a.cluster_id, a.vmid), []).append(a)
    drift: list[Drift] = []
    for owned in view.guests:
        if owned.company_id is None or not rbac.can(principal, Perm.NET_AUDIT, owned.company_id):
            continue
        assert owned.cluster.id is not None
        mine = [a for a in held.pop((owned.cluster.id, owned.guest.vmid), []) if a.company_id == owned.company_id]
        nics = deps.hypervisors.for_cluster(owned.cluster).nics(owned.guest.ref)
        drift += _guest_drift(owned.label, nics, mine, ranges)
    reachable = {c.id: c.name for c in view.clusters if c.name not in view.unreachable}
    for (cluster_id, vmid), left in sorted(held.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        if cluster_id in reachable and vmid is not None:
            for a in left:
                drift.append(Drift(f"{reachable[cluster_id]}/{vmid}", a.nic,
                                   f"{a.address} is assigned to a VM that no longer exists (or is no longer yours)"))
    return drift, sorted(view.unreachable.values())


def _guest_drift(label: str, nics: list[Nic], mine: list[IpAssignment], ranges: dict[int | None, IpRange]
                 ) -> list[Drift]:
    out = []
    by_index = {n.index: n for n in nics}
    for nic in nics:
        assigned = next((a for a in mine if a.nic == nic.index), None)
        configured = nic.address.split("/")[0] if nic.address else None
        if configured is not None and (assigned is None or assigned.address != configured):
            out.append(Drift(label, nic.index, f"{configured} is configured but pvebot did not assign it"))
        if assigned is None:
            continue
        if configured != assigned.address:
            out.append(Drift(label, nic.index, f"{assigned.address} is assigned but not configured"))
        rng = ranges.get(assigned.range_id)
        if rng is not None:
            expected = None if rng.vnet else rng.vlan
            if nic.vlan != expected:
                out.append(Drift(label, nic.index, f"VLAN tag {nic.vlan if nic.vlan is not None else 'none'} differs "
                                                   f"from range {rng.name}'s "
                                                   f"{expected if expected is not None else 'untagged'}"))
    for a in mine:
        if a.nic not in by_index:
            out.append(Drift(label, a.nic, f"{a.address} is assigned to net{a.nic}, which the VM does not have"))
    return out


@dataclass(frozen=True)
class VlanUse:
    vlan: int
    ranges: tuple[str, ...]
    vms: tuple[str, ...]


def vlans(deps: Deps, principal: Principal) -> list[VlanUse]:
    """The VLAN tags the principal's companies use: on their ranges, and on their VMs' NICs."""
    rbac.require(principal, Perm.NET_READ)
    view = inventory.view(deps, principal)
    with deps.uow_factory(principal.scope) as uow:
        rows = uow.ip_ranges.list()
    in_ranges: dict[int, set[str]] = {}
    for rng in rows:
        if rng.vlan is not None and not rng.vnet:
            in_ranges.setdefault(rng.vlan, set()).add(rng.name)
    on_vms: dict[int, set[str]] = {}
    for owned in view.guests:
        if owned.company_id is None:
            continue
        for nic in deps.hypervisors.for_cluster(owned.cluster).nics(owned.guest.ref):
            if nic.vlan is not None:
                on_vms.setdefault(nic.vlan, set()).add(f"{owned.guest.name} net{nic.index}")
    tags = sorted(set(in_ranges) | set(on_vms))
    return [VlanUse(t, tuple(sorted(in_ranges.get(t, ()))), tuple(sorted(on_vms.get(t, ())))) for t in tags]
