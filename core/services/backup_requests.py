"""Asking for backup work: what a command names becomes a target and parameters, then a job or approval.

The company's backup policy is checked here, before anything is queued: only its listed storages,
and a restore as a new VM within its quotas and into its own pool.
"""

from __future__ import annotations

import re

from core import rbac
from core.chat import ConversationRef
from core.errors import Conflict, InvalidArguments, NotFound
from core.principal import Principal
from core.services import inventory, requests, vms
from core.services.backup_operations import MODES
from core.services.backup_targets import BACKUP
from core.services.backups import allowed_storages, check_storage
from core.services.deps import Deps
from core.services.requests import Outcome
from core.services.targets import GUEST

_VM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")


def now(deps: Deps, principal: Principal, *, vm: str, storage: str | None, mode: str, note: str | None,
        protect: bool, conversation: ConversationRef, request_id: str) -> Outcome:
    """Back ``vm`` up now on its own node, to ``storage`` (default: the company's first allowed one)."""
    rbac.require(principal, rbac.Perm.BACKUP_CREATE)
    if mode not in MODES:
        raise InvalidArguments(f"--mode is one of {', '.join(MODES)}")
    target = GUEST.resolve(deps, principal, vm)
    rbac.require(principal, rbac.Perm.BACKUP_CREATE, target.company_id, what="VM")
    assert target.guest is not None and target.cluster is not None
    on_node = deps.hypervisors.for_cluster(target.cluster).backup_storages(target.guest.node)
    allowed = allowed_storages(target.company)
    if storage is None:
        usable = [s for s in (allowed or on_node) if s in on_node]
        if not usable:
            raise NotFound(f"no backup storage your company may use is on node {target.guest.node}")
        storage = usable[0]
    check_storage(target.company, storage)
    if storage not in on_node:
        raise NotFound(f"storage '{storage[:40]}' holds no backups on node {target.guest.node}")
    params: dict[str, object] = {"storage": storage, "mode": mode, "protect": protect}
    if note:
        params["note"] = note[:1024]
    return requests.submit(deps, principal, action="backup.now", target=target, params=dict(params),
                           conversation=conversation, request_id=request_id)


def restore(deps: Deps, principal: Principal, *, vm: str, backup: str, as_new: str | None, reason: str,
            conversation: ConversationRef, request_id: str) -> Outcome:
    """Restore ``backup`` of ``vm`` in place, or as a new VM ``as_new`` in the company's pool."""
    rbac.require(principal, rbac.Perm.BACKUP_RESTORE)
    target = BACKUP.resolve(deps, principal, f"{vm} {backup}")
    rbac.require(principal, rbac.Perm.BACKUP_RESTORE, target.company_id, what="backup")
    params: dict[str, object] = {}
    if as_new:
        if not _VM_NAME.match(as_new):
            raise InvalidArguments(f"'{as_new[:40]}' is not a valid VM name (letters, digits, . and -)")
        assert target.cluster is not None
        seen = inventory.view(deps, principal, refresh=True, cluster=target.cluster.name)
        mine = [o for o in seen.guests if o.company_id == target.company_id]
        if any(o.guest.name.lower() == as_new.lower() for o in mine):
            raise Conflict(f"your company already has a VM named {as_new}")
        like = next((o for o in mine if target.guest is not None and o.guest.vmid == target.guest.vmid), None)
        reserve = vms.check_new_guest_quota(deps, principal, company=target.company, mine=mine, like=like)
        with deps.uow_factory(principal.scope) as uow:
            pools = [b.pool for b in uow.pool_bindings.list()
                     if b.company_id == target.company_id and b.cluster_id == target.cluster.id]
        if not pools:
            raise NotFound("your company has no pool on that cluster")
        params = {"as_new": as_new, "pool": pools[0], "reserve": reserve}
    return requests.submit(deps, principal, action="backup.restore", target=target, params=params, reason=reason,
                           conversation=conversation, request_id=request_id)


def on_backup(deps: Deps, principal: Principal, *, action: str, vm: str, backup: str, reason: str,
              conversation: ConversationRef, request_id: str) -> Outcome:
    """``backup.delete``, ``backup.protect`` or ``backup.unprotect`` on one backup."""
    return requests.operate(deps, principal, action=action, ref=f"{vm} {backup}", reason=reason,
                            conversation=conversation, request_id=request_id)
