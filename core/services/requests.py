"""Asking for an operation: find its target in the caller's scope, then queue a job or ask for approval.

One path for every operation in the catalog: the entry says what its target is, what to record about
it, what could make it refuse at once, and whether a second person must agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import rbac
from core.chat import ConversationRef
from core.errors import BotError
from core.model import ApprovalRequest, Job
from core.ports import UnitOfWork
from core.principal import Principal
from core.services import approvals, catalog, jobs
from core.services.deps import Deps
from core.services.operations import Target


@dataclass(frozen=True)
class Outcome:
    """What an operation request became: a queued job, or an approval request waiting for a second person.

    ``created`` is False when the request was known already: a re-delivery, or an approval request
    that was still pending for the same action on the same target.
    """

    job: Job | None = None
    created: bool = True
    approval: ApprovalRequest | None = None


def operate(
    deps: Deps,
    principal: Principal,
    *,
    action: str,
    ref: str,
    params: dict[str, Any] | None = None,
    reason: str = "",
    conversation: ConversationRef,
    request_id: str,
) -> Outcome:
    """Request ``action`` on the target ``ref`` names: a job, or an approval request when the policy says so.

    Raises:
        PermissionDenied: the role may not do ``action``.
        NotFound: nothing ``ref`` names is in the caller's scope (another company's answers alike).
        InvalidArguments / Conflict: the operation refuses this target or these parameters.
    """
    op = catalog.get(action)
    rbac.require(principal, op.perm)
    target = op.target.resolve(deps, principal, ref)
    rbac.require(principal, op.perm, target.company_id, what=op.target.kind.value)
    return submit(deps, principal, action=action, target=target, params=dict(params or {}), reason=reason,
                  conversation=conversation, request_id=request_id)


def submit(
    deps: Deps,
    principal: Principal,
    *,
    action: str,
    target: Target,
    params: dict[str, Any],
    reason: str = "",
    conversation: ConversationRef,
    request_id: str,
    company_id: int | None = None,
    summary: str | None = None,
    admit: Callable[[UnitOfWork], None] | None = None,
) -> Outcome:
    """Queue ``action`` on a resolved ``target``, or ask for approval first; see :func:`operate`."""
    op = catalog.get(action)
    hv = None if target.cluster is None else deps.hypervisors.for_cluster(target.cluster)
    if op.check is not None:
        try:
            op.check(hv, target, params)
        except BotError:
            # a platform delivering the request again (a slow answer) gets what the first delivery made,
            # though the guest has changed since (the job it queued has started it): looked for only here,
            # so that a new request pays for no look-up
            earlier = _delivered_before(deps, principal, request_id)
            if earlier is None:
                raise
            return earlier
    if op.prepare is not None:
        op.prepare(deps, principal, target, params)
    if op.record is not None:
        params.update(op.record(hv, target, params))
    company = target.company
    # the provider's own operations follow the catalog's defaults: no company's policy applies to them
    if target.provider:
        needs = action in catalog.CATALOG.default_approvals
    else:
        needs = approvals.needs_approval(company, action)
    if needs:
        approval, created = approvals.request(deps, principal, action=action, target=target, params=params,
                                              reason=reason, conversation=conversation, request_id=request_id)
        return Outcome(approval=approval, created=created)
    job, created = jobs.submit(deps, principal, action=action, target=target, params=params,
                               conversation=conversation, request_id=request_id, company_id=company_id,
                               summary=summary, admit=admit)
    return Outcome(job=job, created=created)


def _delivered_before(deps: Deps, principal: Principal, request_id: str) -> Outcome | None:
    with deps.uow_factory(principal.scope, autocommit=True) as uow:
        job = uow.jobs.by_request(request_id)
        if job is not None:
            return Outcome(job=job, created=False)
        approval = uow.approvals.by_request(request_id)
        return None if approval is None else Outcome(approval=approval, created=False)
