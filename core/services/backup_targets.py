"""The backup volume as an operation's target: one backup of one VM, owned by the caller's company.

Named as ``"<vm> <backup>"`` (the VM by name, VMID or cluster/vmid, the backup by volume id, ``latest``
or its label). The VM may be gone: its company still restores or deletes the backups it owned, by
VMID. Found again when a job runs, the backup must still be there and still the same company's.
"""

from __future__ import annotations

from typing import Any

from core.errors import InvalidArguments, NotFound
from core.model import Backup, Company
from core.principal import Principal
from core.services import backups, inventory, targets
from core.services.deps import Deps
from core.services.operations import Target, TargetKind


def _record(found: backups.OwnedBackup, listing: backups.Listing, owned: inventory.OwnedGuest | None,
            deps: Deps) -> dict[str, Any]:
    b = found.backup
    record: dict[str, Any] = {
        "cluster": found.cluster.name, "cluster_id": found.cluster.id, "volid": b.volid, "storage": b.storage,
        "backup_vmid": b.vmid, "kind": b.kind, "backup_label": found.label, "ctime": b.ctime, "size": b.size,
        "protected": b.protected, "node": b.node or (owned.guest.node if owned else None),
        "detail": f"{b.volid} of {listing.label}",
    }
    if owned is not None:
        identity = deps.hypervisors.for_cluster(owned.cluster).identity(owned.guest.ref)
        record |= targets.guest_record(owned, identity)
    return record


def _label(record: dict[str, Any]) -> str:
    return f"backup {record['backup_label']} of {record.get('label') or 'VMID ' + str(record['backup_vmid'])}"


class BackupTarget:
    """One backup the caller's company owns, with its VM when the VM still exists."""

    kind = TargetKind.BACKUP

    def resolve(self, deps: Deps, principal: Principal, ref: str) -> Target:
        vm, _, backup = ref.strip().partition(" ")
        if not backup.strip():
            raise InvalidArguments("name the VM and the backup: <vm> <backup> (volume id, latest or its label)")
        listing = backups.for_vm(deps, principal, vm)
        found = backups.pick(listing, backup.strip())
        owned = _guest(deps, principal, found, vm)
        if found.company is None:
            raise InvalidArguments(f"{found.backup.volid} belongs to no company; bind its VM's pool first")
        record = _record(found, listing, owned, deps)
        if record["node"] is None:
            record["node"] = _any_node(deps, found)
        return Target(kind=self.kind, label=_label(record), company=found.company, record=record,
                      cluster=found.cluster, guest=None if owned is None else owned.guest)

    def recheck(self, deps: Deps, principal: Principal, record: dict[str, Any], *, company_id: int,
                fresh: bool) -> Target:
        seen = inventory.view(deps, principal, refresh=fresh, cluster=record["cluster"])
        cluster = next(c for c in seen.clusters if c.name == record["cluster"])
        hv = deps.hypervisors.for_cluster(cluster)
        listed = [b for b in hv.backups(node=record["node"], storage=record["storage"],
                                        vmid=int(record["backup_vmid"])) if b.volid == record["volid"]]
        mine = backups.visible(deps, principal, cluster=cluster, backups=listed, guests=seen.guests,
                               companies=seen.companies)
        if not mine or mine[0].company_id != company_id:
            raise NotFound(f"{_label(record)} is gone or no longer yours")
        company: Company | None = seen.companies.get(company_id)
        guest = None
        if "vmid" in record:
            now = [o for o in seen.guests if o.guest.vmid == int(record["vmid"]) and o.company_id == company_id]
            guest = now[0].guest if now else None
        return Target(kind=self.kind, label=_label(record), company=company, record=record | {
            "protected": mine[0].backup.protected}, cluster=cluster, guest=guest)

    def replaced(self, deps: Deps, target: Target) -> str | None:
        if target.guest is None or target.cluster is None or "identity" not in target.record:
            return None
        return targets.replaced(target.record,
                                deps.hypervisors.for_cluster(target.cluster).identity(target.guest.ref))


def _guest(deps: Deps, principal: Principal, found: backups.OwnedBackup, vm: str) -> inventory.OwnedGuest | None:
    seen = inventory.view(deps, principal, cluster=found.cluster.name)
    candidates = [o for o in seen.guests if o.guest.vmid == found.backup.vmid and o.company_id == found.company_id]
    return candidates[0] if candidates else None


def _any_node(deps: Deps, found: backups.OwnedBackup) -> str:
    stores = [s for s in deps.hypervisors.for_cluster(found.cluster).backup_stores()
              if s.storage == found.backup.storage]
    if not stores:
        raise NotFound(f"storage '{found.backup.storage}' is not reachable now")
    return stores[0].node


def backup_of(target: Target) -> Backup:
    """The backup a resolved target stands for, as recorded."""
    r = target.record
    return Backup(volid=r["volid"], storage=r["storage"], vmid=int(r["backup_vmid"]), size=int(r.get("size") or 0),
                  ctime=int(r.get("ctime") or 0), protected=bool(r.get("protected")), kind=r.get("kind") or "qemu",
                  node=r.get("node"))


BACKUP = BackupTarget()
