"""Targets that live in Proxmox's inventory: guests, and the templates new guests are cloned from.

A guest target records where the guest is and which guest it is (:class:`GuestIdentity`), because a
VMID names a slot that Proxmox gives to the next guest created once it is free. Finding the target
again (when a job runs or an approval is decided) looks in the requester's company only, so a guest
that moved to another company answers like one that is gone.
"""

from __future__ import annotations

from typing import Any

from core.errors import Conflict, NotFound
from core.model import GuestIdentity
from core.principal import Principal
from core.services import inventory
from core.services.deps import Deps
from core.services.operations import Target, TargetKind


def guest_record(owned: inventory.OwnedGuest, identity: GuestIdentity) -> dict[str, Any]:
    """A guest as a job or approval stores it: where it is, and which guest it is (not just its VMID)."""
    g = owned.guest
    return {"cluster": owned.cluster.name, "cluster_id": owned.cluster.id, "node": g.node, "kind": g.kind,
            "vmid": g.vmid, "name": g.name, "label": owned.label, "identity": identity.to_dict(),
            "detail": f"{g.name or '(no name)'} — VMID {g.vmid} on {owned.cluster.name}/{g.node}"}


def replaced(record: dict[str, Any], current: GuestIdentity) -> str | None:
    """Why the guest now at ``record``'s VMID is not the one ``record`` was taken from, or None if it is.

    Only call it for a guest in the requester's company: the message names the guest found there.
    """
    recorded = record.get("identity")
    label = f"{record.get('name') or 'the VM'} ({record['cluster']}/{record['vmid']})"
    if recorded is None:
        return (f"{label} cannot be confirmed: the request was made before pvebot recorded which VM it was for; "
                "ask again")
    if GuestIdentity.from_dict(recorded).same_guest(current):
        return None
    now = f"now belongs to {current.name}" if current.name and current.name != record.get("name") else (
        "now belongs to a new VM of the same name")
    return f"{label} is not the VM this request was made for: it was deleted and VMID {record['vmid']} {now}"


def _target(kind: TargetKind, owned: inventory.OwnedGuest, record: dict[str, Any]) -> Target:
    return Target(kind=kind, label=owned.label, company=owned.company, record=record, cluster=owned.cluster,
                  guest=owned.guest)


class GuestTarget:
    """A VM or container of the caller's company, named by VMID, unique name or ``cluster/vmid``."""

    kind = TargetKind.GUEST

    def resolve(self, deps: Deps, principal: Principal, ref: str) -> Target:
        owned = inventory.find(deps, principal, ref)
        if owned.company is None:  # a super_admin looking at a guest in no company's pool
            raise Conflict(f"{owned.label} is in no company's pool; bind its pool first")
        identity = deps.hypervisors.for_cluster(owned.cluster).identity(owned.guest.ref)
        return _target(self.kind, owned, guest_record(owned, identity))

    def recheck(self, deps: Deps, principal: Principal, record: dict[str, Any], *, company_id: int,
                fresh: bool) -> Target:
        view = inventory.view(deps, principal, refresh=fresh, cluster=record["cluster"])
        found = [o for o in view.guests if o.guest.vmid == int(record["vmid"]) and o.company_id == company_id]
        if not found:
            # an approver is told plainly; a job's requester learns it may have moved out of their hands
            gone = "no longer exists" if fresh else "is gone or no longer yours"
            raise NotFound(f"VM {record.get('name') or record['vmid']} {gone}")
        return _target(self.kind, found[0], record)

    def replaced(self, deps: Deps, target: Target) -> str | None:
        assert target.guest is not None and target.cluster is not None
        return replaced(target.record, deps.hypervisors.for_cluster(target.cluster).identity(target.guest.ref))


class TemplateTarget:
    """A template the caller's company may clone: its own, or one its cluster shares."""

    kind = TargetKind.TEMPLATE

    def resolve(self, deps: Deps, principal: Principal, ref: str) -> Target:
        view = inventory.view(deps, principal, refresh=True)
        owned = inventory.resolve(view.templates, ref, what="template")
        identity = deps.hypervisors.for_cluster(owned.cluster).identity(owned.guest.ref)
        return _target(self.kind, owned, guest_record(owned, identity))

    def recheck(self, deps: Deps, principal: Principal, record: dict[str, Any], *, company_id: int,
                fresh: bool) -> Target:
        view = inventory.view(deps, principal, refresh=fresh, cluster=record["cluster"])
        found = [o for o in view.templates if o.guest.vmid == int(record["vmid"])]
        if not found:
            raise NotFound(f"template {record.get('name') or record['vmid']} is gone or no longer usable")
        return _target(self.kind, found[0], record)

    def replaced(self, deps: Deps, target: Target) -> str | None:
        assert target.guest is not None and target.cluster is not None
        return replaced(target.record, deps.hypervisors.for_cluster(target.cluster).identity(target.guest.ref))


GUEST = GuestTarget()
TEMPLATE = TemplateTarget()
