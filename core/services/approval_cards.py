"""An approval request's card: how it reads, where the approvers' copies go, and keeping every copy current.

The lifecycle (request, decide, expire, withdraw) is :mod:`core.services.approvals`, which calls
:func:`update_card` when a request's state changes. This module posts and edits cards and stores
where they landed, but never changes a request's state, so it imports nothing from the lifecycle.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from core import timefmt
from core.chat import Action, ActionStyle, ChannelRef, ConversationRef, Field, MessageRef, Reply, Severity
from core.ids import show_approval, show_job
from core.model import ApprovalRequest, ApprovalState, ChatIdentity, Company, Role, User
from core.principal import Scope
from core.services import catalog, channels
from core.services.deps import Deps
from core.services.operations import PROVIDER_COMPANY_ID

log = logging.getLogger(__name__)


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
    copies = []
    for recipient in recipients:
        try:
            place = recipient if isinstance(recipient, ConversationRef) else _open_direct(deps, recipient, near)
            if place is not None:
                reply = card(deps, approval, for_approvers=True, shared=shows_per_person(place))
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


def shows_per_person(place: ConversationRef) -> bool:
    """Whether a copy posted to ``place`` can keep its buttons for the deciders alone.

    A Teams channel or group chat can: buttons restricted to some people show only in their own view
    (``refresh.userIds``), so the requester and anyone else there see none. A Slack channel cannot (a
    message's buttons show to everyone in it), and a direct conversation holds its approver only.
    """
    return place.platform == "teams" and place.get("conversation_type") not in (None, "", "personal")


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


def card_posted(deps: Deps, approval_id: str, posted: MessageRef) -> None:
    """Remember where the request's card is: the decision edits it and the job threads under it."""
    with deps.uow_factory(Scope.everything()) as uow:
        approval = uow.approvals.get(approval_id)
        if approval is not None and not approval.message_ref:
            approval.message_ref = posted.to_dict()
            uow.commit()


def user_name(deps: Deps, user_id: int | None) -> str:
    """A user as cards and answers name them ("pvebot" for the system)."""
    if not user_id:
        return "pvebot"
    with deps.uow_factory(Scope.everything()) as uow:
        user = uow.users.get(user_id)
    return user.name if user else "a former user"


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


def card(deps: Deps, approval: ApprovalRequest, *, for_approvers: bool = False, announcing: bool = False,
         shared: bool = False) -> Reply:
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
        shared: the approvers' copy goes where others see it too and the platform can show buttons to
            some people only (:func:`shows_per_person`): its buttons are restricted to the deciders.

    Once decided, every copy shows the same card: the decision, by whom and when, and no buttons.
    """
    now = deps.clock.now()
    label = show_approval(approval.id)
    asked = question(approval)
    fields = (Field("Requested by", user_name(deps, approval.requester_user_id)),
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
    names = ", ".join(user_name(deps, u) for u in deciders[:5]) + (" …" if len(deciders) > 5 else "")
    state = f"Pending · expires {timefmt.relative(approval.expires_at, now=now)}"
    typed = f"approve {label}"
    # the copies are about to be posted: nothing is undelivered yet
    coming = announcing and not for_approvers and not approval.copies and bool(
        _recipients(deps, approval, _company(deps, approval.company_id)))
    if for_approvers and shared:
        # the requester may be in the channel too: the buttons show to the deciders only
        text = (f"{state}\nAn approver decides here (not the requester): {names or 'nobody may decide'}. "
                f"Type `{typed}` (or `deny {label} <reason>`) if the buttons do not show.")
        only: tuple[int, ...] = deciders
    elif for_approvers:
        text = f"{state}\nYour decision is asked: you may approve or reject (not the requester)."
        only = ()
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
    who = user_name(deps, approval.decided_by_user_id)
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


def update_card(deps: Deps, approval: ApprovalRequest) -> None:
    """Show the decision on the card and on every copy of it (the approvers channel's, the direct messages).

    Called on each change of state: the decision, then how its job ended. The two can race (a job
    ends while its approver's answer is being sent), so the request is read again after the edits
    and the copies edited once more when it has moved on: the last edit shows the last state.
    """
    for _ in range(3):  # pending → approved → how its job ended: at most two moves after the first edit
        _edit_copies(deps, approval)
        with deps.uow_factory(Scope.everything()) as uow:
            fresh = uow.approvals.get(approval.id)
        if fresh is None or (fresh.state, fresh.job_id, fresh.copies) == (approval.state, approval.job_id,
                                                                          approval.copies):
            return
        approval = fresh


def _edit_copies(deps: Deps, approval: ApprovalRequest) -> None:
    places = ([approval.message_ref] if approval.message_ref else []) + list(approval.copies)
    for place in places:
        copy = place is not approval.message_ref
        reply = card(deps, approval, for_approvers=copy,
                     shared=copy and shows_per_person(MessageRef.from_dict(place).conversation))
        try:
            deps.notifier.update(MessageRef.from_dict(place), reply)
        except Exception:
            log.warning("could not update a card of %s", show_approval(approval.id), exc_info=True)
