"""Four eyes for destructive actions: request, decide (exactly once), execute, expire.

A destructive command becomes an :class:`ApprovalRequest` with a preview of what it will
affect. Only a company_admin of that company or a super_admin, never the requester, may
decide. Deciding is one conditional UPDATE (pending → approved/denied), so of any number of
simultaneous clicks exactly one wins; the winner enqueues exactly one job.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from core import rbac
from core.chat import ConversationRef, MessageRef
from core.errors import BotError, Conflict, DuplicateRequest, InvalidArguments, NotFound, PermissionDenied
from core.ids import new_id, show_approval, show_job
from core.model import ApprovalRequest, ApprovalState, Company
from core.ports import Hypervisor, UnitOfWork
from core.principal import Principal, Scope
from core.services import approval_cards, audit, catalog, jobs, notifications, operations
from core.services.deps import Deps
from core.services.operations import Target


def needs_approval(company: Company | None, action: str) -> bool:
    return catalog.CATALOG.needs_approval(company, action)


def request(
    deps: Deps,
    principal: Principal,
    *,
    action: str,
    target: Target,
    params: dict[str, Any],
    reason: str,
    conversation: ConversationRef,
    request_id: str,
) -> tuple[ApprovalRequest, bool]:
    """Record a request for ``action`` on ``target`` with the operation's preview of its effect.

    A re-delivery gets the same request back, and so does asking again for the same action on the
    same guest while a request for it is still pending: two requests for one deletion would let a
    late approval of the second act long after the first was carried out.

    Returns:
        The request, and whether it was made now (False: an existing one answers).

    Raises:
        PermissionDenied / NotFound: the principal could not run ``action`` even with approval.
    """
    op = catalog.get(action)
    company_id = target.company_id
    if company_id is None:
        raise NotFound(f"{target.kind.value} not found")
    rbac.require(principal, op.perm, company_id, what=target.kind.value)
    rbac.require(principal, rbac.Perm.APPROVAL_REQUEST, company_id, what=target.kind.value)
    now = deps.clock.now()
    with deps.uow_factory(principal.scope) as uow:
        existing = uow.approvals.by_request(request_id) or _pending_for(uow, action=action, target=target.record,
                                                                         params=params, now=now)
        if existing is not None:
            return existing, False
    # computed now, so that the approver sees what the requester saw
    facts = op.preview(_hypervisor(deps, target), target, params) if op.preview else []
    preview: dict[str, Any] = {"facts": [list(f) for f in facts]}
    company = target.company
    minutes = company.approval_expiry_minutes if company else 30
    approval = ApprovalRequest(
        id=new_id(),
        company_id=company_id,
        requester_user_id=principal.user_id,
        action=action,
        target=target.record,
        params=params,
        preview=preview,
        state=ApprovalState.PENDING,
        created_at=now,
        expires_at=now + timedelta(minutes=minutes),
        reason=reason[:500],
        conversation=conversation.to_dict(),
        request_id=request_id,
    )
    with deps.uow_factory(principal.scope) as uow:
        try:
            uow.approvals.add(approval)
            audit.record(uow, clock=deps.clock, actor=principal.actor, action="approval.requested",
                         company_id=company_id, target=f"{show_approval(approval.id)} {action} {target.label}",
                         detail={"reason": reason[:200]} if reason else {})
            notifications.record(uow, notifications.approval_event(approval, by=principal.name), clock=deps.clock)
            uow.commit()
        except DuplicateRequest:
            # a concurrent delivery of the same request (a platform retrying a slow answer) stored it
            # first and the unique request id refused ours: answer with that one
            uow.rollback()
            existing = uow.approvals.by_request(request_id)
            if existing is None:
                raise
            return existing, False
    # the approvers are asked only once the requester's card is out: see approval_cards.announce()
    return approval, True


def withdraw(deps: Deps, approval_id: str, *, why: str) -> bool:
    """Close a pending request before any approver is asked (its requester never saw its card).

    It becomes FAILED with ``why`` as its note, audited ``approval.withdrawn``; an ``approve`` of it
    afterwards is refused with that line. Returns whether it was withdrawn now (False: gone or decided).
    """
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        approval = uow.approvals.get(approval_id)
        if approval is None:
            return False
        # the same conditional UPDATE as a decision: an approver typing `approve` meanwhile wins or loses whole
        withdrawn = uow.approvals.decide(approval_id, to=ApprovalState.FAILED, by_user_id=0, at=now, note=why[:500])
        if withdrawn:
            audit.record(uow, clock=deps.clock, actor="system", action="approval.withdrawn",
                         company_id=approval.company_id, target=f"{show_approval(approval.id)} {approval.action}",
                         detail={"why": why[:200]})
            closed = replace(approval, state=ApprovalState.FAILED, decision_note=why[:500])
            notifications.record(uow, notifications.approval_event(closed, by="pvebot"), clock=deps.clock)
        uow.commit()
    if withdrawn:
        _ended_without_job(deps, approval)
    return withdrawn


def _pending_for(
    uow: UnitOfWork, *, action: str, target: dict[str, Any], params: dict[str, Any], now: datetime
) -> ApprovalRequest | None:
    """A request still pending for the same action, with the same parameters, on the same target."""
    for pending in uow.approvals.list(states=[ApprovalState.PENDING], limit=1000):
        if pending.action == action and pending.expires_at > now and pending.params == params \
                and pending.target == target:
            return pending
    return None


def _hypervisor(deps: Deps, target: Target) -> Hypervisor | None:
    return None if target.cluster is None else deps.hypervisors.for_cluster(target.cluster)


def get(deps: Deps, principal: Principal, approval_id: str) -> ApprovalRequest:
    with deps.uow_factory(principal.scope) as uow:
        approval = uow.approvals.get(approval_id)
    if approval is None:
        raise NotFound(f"{show_approval(approval_id)} not found")
    return approval


def list_requests(deps: Deps, principal: Principal, *, include_decided: bool = False) -> list[ApprovalRequest]:
    rbac.require(principal, rbac.Perm.VM_READ)
    expire_due(deps)
    states = None if include_decided else [ApprovalState.PENDING]
    with deps.uow_factory(principal.scope) as uow:
        return uow.approvals.list(states=states, limit=50)


def decide(deps: Deps, principal: Principal, approval_id: str, *, approve: bool, note: str = "") -> ApprovalRequest:
    """Approve or deny; exactly one decision wins, every other attempt is told who decided and when.

    Raises:
        NotFound: no such request in the principal's scope (another company's answers alike).
        PermissionDenied: not an approver, or the requester themselves.
        Conflict: already decided, expired, or the target changed so that it cannot run.
    """
    approval = get(deps, principal, approval_id)
    rbac.require(principal, rbac.Perm.APPROVAL_DECIDE, approval.company_id, what=show_approval(approval_id))
    if approval.requester_user_id == principal.user_id:
        raise PermissionDenied("you cannot decide your own request: four eyes, another approver must")
    now = deps.clock.now()
    if approval.state is ApprovalState.PENDING and now >= approval.expires_at:
        _expire(deps, approval, now)
    if approval.state is not ApprovalState.PENDING:
        raise Conflict(_already(deps, approval))
    if approve:
        failure = _still_valid(deps, approval)
        if failure is not None:
            if _transition(deps, approval, ApprovalState.FAILED, principal, now, failure):
                _ended_without_job(deps, approval)
                approval_cards.update_card(deps, get(deps, principal, approval_id))  # its buttons can no longer work
                raise Conflict(f"{show_approval(approval.id)} cannot run: {failure}. Nothing was done.")
            raise Conflict(_already(deps, get(deps, principal, approval_id)))
    to = ApprovalState.APPROVED if approve else ApprovalState.DENIED
    if not _transition(deps, approval, to, principal, now, note):
        raise Conflict(_already(deps, get(deps, principal, approval_id)))
    if not approve:
        _ended_without_job(deps, approval)
    approval = get(deps, principal, approval_id)
    if approve:
        try:
            _execute(deps, approval)
        except BotError as e:
            # approved but unable to start (the VM went in the instant since the re-check):
            # close the request for good rather than leave it approved with no job
            _close_failed(deps, approval, e.user_message)
            approval_cards.update_card(deps, get(deps, principal, approval_id))
            raise Conflict(f"{show_approval(approval.id)} was approved but cannot run: {e.user_message}") from e
        approval = get(deps, principal, approval_id)
    approval_cards.update_card(deps, approval)
    return approval


def _transition(
    deps: Deps, approval: ApprovalRequest, to: ApprovalState, principal: Principal, now: datetime, note: str
) -> bool:
    with deps.uow_factory(principal.scope) as uow:
        won = uow.approvals.decide(approval.id, to=to, by_user_id=principal.user_id, at=now, note=note[:500])
        if won:
            audit.record(uow, clock=deps.clock, actor=principal.actor, action=f"approval.{to.value}",
                         company_id=approval.company_id, target=f"{show_approval(approval.id)} {approval.action}",
                         detail={"note": note[:200]} if note else {})
            decided = replace(approval, state=to, decision_note=note[:500])
            notifications.record(uow, notifications.approval_event(decided, by=principal.name), clock=deps.clock)
        uow.commit()
        return won


def _still_valid(deps: Deps, approval: ApprovalRequest) -> str | None:
    """Why the approved action can no longer run, or None when it still can."""
    with deps.uow_factory(Scope.everything()) as uow:
        requester = uow.users.get(approval.requester_user_id)
    if requester is None or not requester.active:
        return "the requester is no longer active"
    principal = Principal.of(requester)
    op = catalog.get(approval.action)
    if not rbac.can(principal, op.perm, approval.company_id):
        return "the requester may no longer do this"
    try:
        target = op.target.recheck(deps, principal, approval.target, company_id=approval.company_id, fresh=True)
        # the same thing the requester saw, not another that took its place (a reused VMID)
        why = op.target.replaced(deps, target)
        if why is None and op.still_same is not None:
            op.still_same(_hypervisor(deps, target), target, dict(approval.params))
    except (NotFound, Conflict) as e:
        why = e.user_message
    return why


def _execute(deps: Deps, approval: ApprovalRequest) -> None:
    with deps.uow_factory(Scope.everything()) as uow:
        requester = uow.users.get(approval.requester_user_id)
    assert requester is not None
    principal = Principal.of(requester)
    op = catalog.get(approval.action)
    # the stored record, identity included, travels on: the job refuses whatever took the target's place
    target = op.target.recheck(deps, principal, approval.target, company_id=approval.company_id, fresh=False)
    conversation = ConversationRef.from_dict(approval.conversation)
    job, _ = jobs.submit(
        deps, principal, action=approval.action, target=target, params=dict(approval.params),
        conversation=conversation, company_id=approval.company_id,
        # one approval, one job: a second execution of this line finds the same job
        request_id=f"approval:{approval.id}", approval_id=approval.id,
    )
    with deps.uow_factory(Scope.everything()) as uow:
        stored = uow.approvals.get(approval.id)
        assert stored is not None
        stored.job_id = job.id
        uow.commit()
    posted = MessageRef.from_dict(approval.message_ref) if approval.message_ref else None
    jobs.start(deps, job.id, posted=posted)


def _close_failed(deps: Deps, approval: ApprovalRequest, why: str) -> None:
    with deps.uow_factory(Scope.everything()) as uow:
        stored = uow.approvals.get(approval.id)
        if stored is not None and stored.state is ApprovalState.APPROVED and stored.job_id is None:
            stored.state, stored.decision_note = ApprovalState.FAILED, why[:500]
            audit.record(uow, clock=deps.clock, actor="system", action="approval.failed",
                         company_id=approval.company_id, target=f"{show_approval(approval.id)} {approval.action}",
                         detail={"why": why[:200]})
            notifications.record(uow, notifications.approval_event(stored, by="pvebot"), clock=deps.clock)
            uow.commit()
            closed = True
        else:
            closed = False
    if closed:
        _ended_without_job(deps, approval)


def _ended_without_job(deps: Deps, approval: ApprovalRequest) -> None:
    """The request closed (denied, expired, unable to run) and no job will ever carry it out."""
    operations.end(catalog.get(approval.action), deps, operations.Ended(
        action=approval.action, company_id=approval.company_id, target=approval.target, params=approval.params,
        succeeded=False))


def _expire(deps: Deps, approval: ApprovalRequest, now: datetime) -> None:
    with deps.uow_factory(Scope.everything()) as uow:
        expired = uow.approvals.decide(approval.id, to=ApprovalState.EXPIRED, by_user_id=0, at=now, note="expired")
        if expired:
            audit.record(uow, clock=deps.clock, actor="system", action="approval.expired",
                         company_id=approval.company_id, target=f"{show_approval(approval.id)} {approval.action}")
            notifications.record(uow, notifications.approval_event(replace(approval, state=ApprovalState.EXPIRED),
                                                                   by="pvebot"), clock=deps.clock)
        uow.commit()
        fresh = uow.approvals.get(approval.id)
    if expired:
        _ended_without_job(deps, approval)
    if fresh is not None:
        approval.state, approval.decided_at, approval.decided_by_user_id = (
            fresh.state, fresh.decided_at, fresh.decided_by_user_id)
        approval_cards.update_card(deps, fresh)


def expire_due(deps: Deps) -> int:
    """Expire every pending request past its time; returns how many."""
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        due = [a for a in uow.approvals.list(states=[ApprovalState.PENDING], limit=1000) if a.expires_at <= now]
    for approval in due:
        _expire(deps, approval, now)
    return len(due)


def _already(deps: Deps, approval: ApprovalRequest) -> str:
    who = approval_cards.user_name(deps, approval.decided_by_user_id)
    when = f"{approval.decided_at:%Y-%m-%d %H:%M} UTC" if approval.decided_at else "earlier"
    label = show_approval(approval.id)
    state = approval.state
    if state is ApprovalState.EXPIRED:
        return f"{label} expired at {approval.expires_at:%Y-%m-%d %H:%M} UTC; ask again if it is still needed"
    if state in (ApprovalState.APPROVED, ApprovalState.EXECUTED, ApprovalState.FAILED,
                 ApprovalState.UNKNOWN) and approval.job_id:
        return f"{label} was already approved by {who} at {when} ({show_job(approval.job_id)}, {state.value})"
    if state is ApprovalState.FAILED:
        return f"{label} was closed at {when}: {approval.decision_note or 'it could not run'}"
    return f"{label} was already {state.value} by {who} at {when}"


def parse_decision_note(text: str | None) -> str:
    note = (text or "").strip()
    if len(note) > 500:
        raise InvalidArguments("keep the reason under 500 characters")
    return note
