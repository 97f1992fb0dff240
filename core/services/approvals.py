"""Four eyes for destructive actions: request, decide (exactly once), execute, expire.

A destructive command becomes an :class:`ApprovalRequest` with a preview of what it will
affect. Only a company_admin of that company or a super_admin, never the requester, may
decide. Deciding is one conditional UPDATE (pending → approved/denied), so of any number of
simultaneous clicks exactly one wins; the winner enqueues exactly one job.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from core import rbac, timefmt
from core.chat import Action, ActionStyle, ChannelRef, ConversationRef, Field, MessageRef, Reply, Severity
from core.errors import BotError, Conflict, DuplicateRequest, InvalidArguments, NotFound, PermissionDenied
from core.ids import new_id, show_approval, show_job
from core.model import ApprovalRequest, ApprovalState, ChatIdentity, Company, Role, User
from core.ports import Hypervisor, UnitOfWork
from core.principal import Principal, Scope
from core.services import audit, catalog, channels, jobs, notifications, operations
from core.services.deps import Deps
from core.services.operations import PROVIDER_COMPANY_ID, Target

log = logging.getLogger(__name__)


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
    # the approvers are asked only once the requester's card is out: see announce()
    return approval, True


def announce(deps: Deps, approval_id: str) -> None:
    """Post the approvers' copy of a request whose card its requester has now been shown.

    The copy goes into the approvers channel the company's provisioning names or, when it names
    none, to each eligible approver by direct message on the requester's platform. The requester's
    card was posted saying who is asked; when not one copy could be posted after all, it is edited
    to say who must decide and what to type. A request no longer pending (withdrawn, decided) is
    not announced.
    """
    with deps.uow_factory(Scope.everything()) as uow:
        approval = uow.approvals.get(approval_id)
    if approval is None or approval.state is not ApprovalState.PENDING:
        return
    recipients = _recipients(deps, approval, _company(deps, approval.company_id))
    if not recipients:
        return  # the requester's card said so when it was posted
    announced = _copy_to_approvers(deps, approval, recipients)
    if not announced.copies:
        _update_requester_card(deps, announced)


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


# where an approvers' copy goes: a conversation to post into, or a person whose direct conversation to open
Recipient = ConversationRef | ChatIdentity


def _recipients(deps: Deps, approval: ApprovalRequest, company: Company | None) -> list[Recipient]:
    """Who gets the approvers' copy, read from the database alone (no platform is asked here).

    The approvers channel the company names when it can be reached (none while it cannot), else each
    approver who has an identity on the platform the request came from, when that platform can open
    direct conversations.
    """
    resolution = channels.approvers_channel(deps.uow_factory, company)
    if resolution is not None:
        return [resolution.channel.conversation()] if resolution.channel is not None else []
    if deps.direct is None:
        return []
    near = ConversationRef.from_dict(approval.conversation)
    # the workspace the request came from: a bot reaches its own Slack team or Teams tenant only
    workspace = near.get("tenant_id") if near.platform == "teams" else near.get("team")
    found: list[Recipient] = []
    for user_id in _deciders(deps, approval):
        with deps.uow_factory(Scope.everything()) as uow:
            identities = [i for i in uow.identities.for_user(user_id) if i.platform == near.platform
                          and (workspace is None or i.workspace_id == workspace)]
        found.extend(identities[:1])  # one copy a person: the first identity on that platform
    return found


def _copy_to_approvers(deps: Deps, approval: ApprovalRequest, recipients: list[Recipient]) -> ApprovalRequest:
    """Post the approvers' copy to each recipient and store where each landed; returns the request as stored.

    A recipient that cannot be reached is logged and skipped; no copy is stored for it.
    """
    near = ConversationRef.from_dict(approval.conversation)
    reply = card(deps, approval, for_approvers=True)
    copies = []
    for recipient in recipients:
        try:
            place = recipient if isinstance(recipient, ConversationRef) else _open_direct(deps, recipient, near)
            if place is not None:
                copies.append(deps.notifier.post(place, reply).to_dict())
        except Exception:
            log.warning("could not post %s to an approver", show_approval(approval.id), exc_info=True)
    if not copies:
        return approval
    with deps.uow_factory(Scope.everything()) as uow:
        stored = uow.approvals.get(approval.id)
        if stored is not None:
            stored.copies = [*stored.copies, *copies]
            uow.commit()
            return stored
    return approval


def _open_direct(deps: Deps, identity: ChatIdentity, near: ConversationRef) -> ConversationRef | None:
    return None if deps.direct is None else deps.direct.direct(identity, near=near)


def _deciders(deps: Deps, approval: ApprovalRequest) -> tuple[int, ...]:
    return tuple(u for u in approvers(deps, approval.company_id) if u != approval.requester_user_id)


def deliver_waiting(deps: Deps, channel: ChannelRef) -> int:
    """Post the pending requests that waited for ``channel`` to become reachable; returns how many.

    Only requests of companies whose provisioning names this very channel are posted.
    """
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        naming = {c.id: c for c in uow.companies.list() if channels.named_by(c) == channel.name}
        waiting = [a for a in uow.approvals.list(states=[ApprovalState.PENDING], limit=1000)
                   if a.company_id in naming and not a.copies and a.expires_at > now] if naming else []
    count = 0
    for approval in reversed(waiting):  # oldest first, as they were asked
        delivered = _copy_to_approvers(deps, approval, _recipients(deps, approval, naming[approval.company_id]))
        if not delivered.copies:
            continue
        count += 1
        # the requester's card no longer needs to say that the approvers cannot see it
        _update_requester_card(deps, delivered)
    return count


def _update_requester_card(deps: Deps, approval: ApprovalRequest) -> None:
    """Show the requester's card as the request now stands (whether its approvers got their copy)."""
    if not approval.message_ref:
        return
    try:
        deps.notifier.update(MessageRef.from_dict(approval.message_ref), card(deps, approval))
    except Exception:
        log.warning("could not update the card of %s", show_approval(approval.id), exc_info=True)


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


def card_posted(deps: Deps, approval_id: str, posted: MessageRef) -> None:
    """Remember where the request's card is: the decision edits it and the job threads under it."""
    with deps.uow_factory(Scope.everything()) as uow:
        approval = uow.approvals.get(approval_id)
        if approval is not None and not approval.message_ref:
            approval.message_ref = posted.to_dict()
            uow.commit()


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
                _update_card(deps, get(deps, principal, approval_id))  # its buttons can no longer work
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
            _update_card(deps, get(deps, principal, approval_id))
            raise Conflict(f"{show_approval(approval.id)} was approved but cannot run: {e.user_message}") from e
        approval = get(deps, principal, approval_id)
    _update_card(deps, approval)
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
        _update_card(deps, fresh)


def expire_due(deps: Deps) -> int:
    """Expire every pending request past its time; returns how many."""
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        due = [a for a in uow.approvals.list(states=[ApprovalState.PENDING], limit=1000) if a.expires_at <= now]
    for approval in due:
        _expire(deps, approval, now)
    return len(due)


def _name(deps: Deps, user_id: int | None) -> str:
    if not user_id:
        return "pvebot"
    with deps.uow_factory(Scope.everything()) as uow:
        user = uow.users.get(user_id)
    return user.name if user else "a former user"


def _already(deps: Deps, approval: ApprovalRequest) -> str:
    who = _name(deps, approval.decided_by_user_id)
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


def describe(target: dict[str, Any]) -> str:
    """A stored target as a card shows it."""
    if target.get("detail"):
        return str(target["detail"])
    if "vmid" in target:  # requests made before targets carried their own description
        return f"{target.get('name') or '(no name)'} — VMID {target['vmid']} on {target['cluster']}/{target['node']}"
    return str(target.get("label", "?"))


def approvers(deps: Deps, company_id: int) -> tuple[int, ...]:
    """Who may decide requests of ``company_id``: its company_admins and every super_admin."""
    with deps.uow_factory(Scope.everything()) as uow:
        users: list[User] = uow.users.list()
    return tuple(
        u.id for u in users
        if u.id is not None and u.active and (
            u.role is Role.SUPER_ADMIN or (u.role is Role.COMPANY_ADMIN and u.company_id == company_id))
    )


def question(approval: ApprovalRequest) -> str:
    """What the approver is asked, without the question mark: "Delete db-01"."""
    verb = catalog.get(approval.action).verb if approval.action in catalog.CATALOG else approval.action
    # a guest by its name (its cluster and VMID are in the details), anything else by its label
    what = approval.target.get("name") or approval.target.get("label") or describe(approval.target)
    return f"{verb[:1].upper()}{verb[1:]} {what}"


_OUTCOME = {
    ApprovalState.APPROVED: "approved",
    ApprovalState.EXECUTED: "done",
    ApprovalState.DENIED: "rejected",
    ApprovalState.EXPIRED: "expired",
    ApprovalState.FAILED: "could not run",
    ApprovalState.UNKNOWN: "outcome unknown",
}
_DECIDED_SEVERITY = {ApprovalState.APPROVED: Severity.SUCCESS, ApprovalState.EXECUTED: Severity.SUCCESS,
                     ApprovalState.FAILED: Severity.ERROR, ApprovalState.UNKNOWN: Severity.WARNING}


def card(deps: Deps, approval: ApprovalRequest, *, for_approvers: bool = False, announcing: bool = False) -> Reply:
    """The approval card: the question, its state and time left, who asks and why, what is at stake.

    Args:
        deps: the ports.
        approval: the request as stored.
        for_approvers: the copy that goes to approvers (their channel, their direct messages), whose
            buttons everyone there may press. The requester's card restricts them to the approvers
            (``only_for``): Teams shows them only in the approvers' own view, Slack not at all.
        announcing: the requester's card of a request just made, whose approvers get their copy once
            it is posted (:func:`announce`): it says they are asked when there is anyone to ask, and
            :func:`announce` edits it when not one copy could be posted after all.

    Once decided, every copy shows the same card: the decision, by whom and when, and no buttons.
    """
    now = deps.clock.now()
    label = show_approval(approval.id)
    asked = question(approval)
    fields = (Field("Requested by", _name(deps, approval.requester_user_id)),
              Field("Reason", approval.reason or "none given"), Field("Request", label))
    facts = [(str(fact_label), str(value)) for fact_label, value in approval.preview.get("facts", [])]
    details = (Field("Action", approval.action), Field("Target", describe(approval.target)),
               *(Field(k, v) for k, v in facts))
    if approval.state is not ApprovalState.PENDING:
        # what the preview said (its state, its disks) is history now: the decision is what is true
        return Reply(title=f"{asked}: {_OUTCOME.get(approval.state, approval.state.value)}",
                     text=_decided(deps, approval, now=now), severity=_DECIDED_SEVERITY.get(approval.state,
                                                                                            Severity.INFO),
                     fields=fields, details=(details[0], details[1]))
    deciders = _deciders(deps, approval)
    names = ", ".join(_name(deps, u) for u in deciders[:5]) + (" …" if len(deciders) > 5 else "")
    state = f"Pending · expires {timefmt.relative(approval.expires_at, now=now)}"
    typed = f"approve {label}"
    # the copies are about to be posted: nothing is undelivered yet
    coming = announcing and not for_approvers and not approval.copies and bool(
        _recipients(deps, approval, _company(deps, approval.company_id)))
    if for_approvers:
        text = f"{state}\nYour decision is asked: you may approve or reject (not the requester)."
        only: tuple[int, ...] = ()
    elif approval.copies or coming:
        text = f"{state}\nWaiting for an approver: {names or 'nobody may decide'}"
        only = deciders
    else:
        # nobody could be sent the card: no buttons anyone could press, but who and what to type
        # the provider's own requests (a node, a cluster) are decided by another super_admin
        who = "Another super_admin" if approval.company_id == PROVIDER_COMPANY_ID else "A company admin"
        text = (f"{state}\nNo approver could be sent this card. {names or who} must type "
                f"`{typed}` (or `deny {label} <reason>`).")
        only = deciders
    actions = (
        Action(asked[:75], typed, ActionStyle.DANGER, only),
        Action("Reject", f"deny {label}", ActionStyle.DEFAULT, only, ask="Reason for rejecting (optional)"),
    )
    return Reply(title=f"{asked}?", text=text, severity=Severity.WARNING, fields=fields,
                 highlight=at_stake(approval.action, facts), details=details, actions=actions,
                 footer=None if for_approvers or coming else _undelivered(deps, approval))


def at_stake(action: str, facts: list[tuple[str, str]]) -> str | None:
    """The one line an approver must not miss: what the operation destroys, and the guest's state."""
    op = catalog.get(action) if action in catalog.CATALOG else None
    if op is not None and op.at_stake is not None:
        return op.at_stake(facts)
    state = dict(facts).get("Current state")
    return f"The guest is {state}" if state else None


def _decided(deps: Deps, approval: ApprovalRequest, *, now: datetime) -> str:
    """The decision in words: "Approved by Alice Admin at 22:08 UTC · job-… done"."""
    who = _name(deps, approval.decided_by_user_id)
    when = timefmt.absolute(approval.decided_at, now=now) if approval.decided_at else "earlier"
    state = approval.state
    if state is ApprovalState.EXPIRED:
        return f"Expired {timefmt.absolute(approval.expires_at, now=now)}: nobody decided in time. Ask again if " \
               "it is still needed."
    if state is ApprovalState.DENIED:
        return f"Rejected by {who} at {when}: {approval.decision_note or 'no reason given'}"
    job = f" · {show_job(approval.job_id)}" if approval.job_id else ""
    if state is ApprovalState.FAILED and not approval.job_id:
        return f"Closed at {when}: {approval.decision_note or 'it could not run'}. Nothing was done."
    done = {ApprovalState.APPROVED: " queued", ApprovalState.EXECUTED: " done", ApprovalState.FAILED: " failed",
            ApprovalState.UNKNOWN: ": outcome unknown"}.get(state, "")
    return f"Approved by {who} at {when}{job}{done if job else ''}"


def _undelivered(deps: Deps, approval: ApprovalRequest) -> str | None:
    """Why a pending request has no copy in the approvers channel its company names, or None."""
    if approval.state is not ApprovalState.PENDING or approval.copies:
        return None
    resolution = channels.approvers_channel(deps.uow_factory, _company(deps, approval.company_id))
    return None if resolution is None else channels.describe(resolution)


def _company(deps: Deps, company_id: int) -> Company | None:
    with deps.uow_factory(Scope.everything()) as uow:
        return uow.companies.get(company_id)


def _update_card(deps: Deps, approval: ApprovalRequest) -> None:
    """Show the decision on the card and on every copy of it (the approvers channel's, the direct messages)."""
    places = ([approval.message_ref] if approval.message_ref else []) + list(approval.copies)
    if not places:
        return
    for place in places:
        reply = card(deps, approval, for_approvers=place is not approval.message_ref)
        try:
            deps.notifier.update(MessageRef.from_dict(place), reply)
        except Exception:
            log.warning("could not update a card of %s", show_approval(approval.id), exc_info=True)


def parse_decision_note(text: str | None) -> str:
    note = (text or "").strip()
    if len(note) > 500:
        raise InvalidArguments("keep the reason under 500 characters")
    return note
