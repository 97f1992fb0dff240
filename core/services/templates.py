"""Templates a principal may clone: which ones, what is in them, and the answer to a mistyped name.

A template is usable when it sits in a pool of a company in the caller's scope, or is one of its
cluster's ``shared_templates``, and that cluster holds a pool of the caller's (where a clone
would go). A super_admin sees every template. A private template of another company is never
listed, described or suggested: it answers exactly like one that does not exist.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core import rbac
from core.errors import BotError, NotFound
from core.principal import Principal
from core.services import inventory
from core.services.deps import Deps
from core.services.inventory import OwnedGuest

MAX_LISTED = 25
SUGGESTIONS = 3


@dataclass(frozen=True)
class TemplateInfo:
    """One usable template, with the OS type its configuration names (None when it could not be read)."""

    owned: OwnedGuest
    ostype: str | None
    shared: bool


@dataclass(frozen=True)
class TemplateList:
    templates: list[TemplateInfo]
    # how many are usable in all; only the first MAX_LISTED are described
    total: int
    unreachable: dict[str, str]


def usable(view: inventory.View, principal: Principal) -> list[OwnedGuest]:
    """The templates of ``view`` that ``principal`` may clone, sorted by name.

    Args:
        view: what :func:`core.services.inventory.view` answered for ``principal``.
        principal: the caller.

    Returns:
        The templates on clusters holding a pool of the caller's scope (every template for an
        unrestricted scope).
    """
    if principal.scope.unrestricted:
        return list(view.templates)
    return [t for t in view.templates if t.cluster.id in view.pooled_clusters]


def list_usable(deps: Deps, principal: Principal, *, cluster: str | None = None) -> TemplateList:
    """The templates ``principal`` may clone, each with its OS type from one config call.

    Only the first :data:`MAX_LISTED` are described, so a large catalogue costs a bounded number
    of Proxmox calls; those run in parallel, and one that fails leaves its OS unknown.

    Args:
        deps: the ports.
        principal: the caller.
        cluster: only this cluster's templates.

    Returns:
        The described templates, how many are usable in all, and clusters that did not answer.

    Raises:
        PermissionDenied: the role cannot read VMs.
        NotFound: ``cluster`` is not one the principal can see.
        ExternalSystemError: no cluster answered.
    """
    # vm.read, not vm.create: a salesperson advising a customer reads what could be created
    rbac.require(principal, rbac.Perm.VM_READ)
    seen = inventory.view(deps, principal, cluster=cluster)
    found = usable(seen, principal)
    shown = found[:MAX_LISTED]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(shown))), thread_name_prefix="template") as pool:
        ostypes = list(pool.map(lambda t: _ostype(deps, t), shown))
    infos = [TemplateInfo(owned=t, ostype=os, shared=t.guest.vmid in t.cluster.shared_templates)
             for t, os in zip(shown, ostypes, strict=True)]
    return TemplateList(templates=infos, total=len(found), unreachable=seen.unreachable)


def _ostype(deps: Deps, template: OwnedGuest) -> str | None:
    try:
        config = deps.hypervisors.for_cluster(template.cluster).guest_config(template.guest.ref)
    except BotError:
        return None  # the list is still useful without it
    return config.get("ostype") or None


def find(candidates: Sequence[OwnedGuest], ref: str) -> OwnedGuest:
    """Resolve ``ref`` (name, VMID or cluster/vmid) among usable templates.

    Args:
        candidates: the templates the caller may use (see :func:`usable`).
        ref: what the caller typed.

    Returns:
        The one template meant.

    Raises:
        NotFound: none matches; the message names the closest usable names, if any are close.
        InvalidArguments: a malformed reference, or a name several templates share.
    """
    try:
        return inventory.resolve(list(candidates), ref, what="template")
    except NotFound:
        names = sorted({t.guest.name for t in candidates if t.guest.name})
        close = difflib.get_close_matches(ref.strip(), names, n=SUGGESTIONS)
        hint = f"closest: {', '.join(close)}" if close else "'template list' shows the ones you can use"
        raise NotFound(f"template '{ref.strip()[:40]}' not found; {hint}") from None
