"""Notification subscriptions, and events turned into one outbox row per subscribed channel.

A subscription is typed in the channel it is for (``notify subscribe backups``): the channel is the
one the command came from, never one named by the caller. An event (a backup run, a job's outcome,
an approval) becomes messages in one transaction: each subscription that hears about it gets one
outbox row, keyed by the event, so an event recorded twice (pushed and pulled) is queued once.
Sending is :mod:`core.services.outbox`'s work.

Routing is the tenant boundary: a company's subscription sees only its own VMs of a run; a
provider subscription (no company, super_admins only) sees the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core import rbac, timefmt
from core.chat import ConversationRef, Field, Reply, Severity, Table
from core.errors import Conflict, InvalidArguments, NotFound, PermissionDenied
from core.ids import show_approval, show_job
from core.model import (
    ApprovalRequest,
    ApprovalState,
    Company,
    Job,
    JobState,
    OutboxMessage,
    Role,
    Subscription,
    SubscriptionState,
    Topic,
)
from core.ports import Clock, UnitOfWork
from core.principal import Principal, Scope
from core.services import channels, inventory
from core.services.deps import Deps

# topics only the provider's own channels hear
PROVIDER_TOPICS = frozenset({Topic.UPDATES})
_DIGEST_LINES = 20


def channel_of(conversation: ConversationRef) -> str:
    """The channel a command was typed in, as provisioning writes it (a Teams thread is its channel)."""
    return f"{conversation.platform}:{conversation.channel.split(';messageid=', 1)[0]}"


def parse_topic(text: str) -> Topic:
    """A topic as typed.

    Raises:
        InvalidArguments: not one of the topics.
    """
    typed = text.strip().lower()
    for name in (typed, typed + "s"):  # "backup" is what people type for backups
        if name in _TOPICS:
            return Topic(name)
    raise InvalidArguments(f"'{typed[:30]}' is not a topic; one of: " + ", ".join(t.value for t in Topic))


_TOPICS = frozenset(t.value for t in Topic)


def _company_for(principal: Principal, *, everyone: bool, topic: Topic) -> int | None:
    if everyone or topic in PROVIDER_TOPICS:
        if principal.role is not Role.SUPER_ADMIN:
            what = "--all" if everyone else f"the {topic.value} topic"
            raise PermissionDenied(f"{what} is for the provider's own channels (super_admin)")
        return None
    ids = principal.scope.company_ids
    if ids is None or len(ids) != 1:
        raise InvalidArguments("subscribe for one company: super_admins use --all for every company")
    return next(iter(ids))


def subscribe(
    deps: Deps, principal: Principal, *, topic: Topic, channel: str, vm: str | None = None,
    only_failures: bool = False, everyone: bool = False,
) -> tuple[Subscription, bool]:
    """Subscribe ``channel`` to ``topic`` for the principal's company (or every company with ``everyone``).

    Args:
        deps: ports.
        principal: who subscribes; a company_admin for their company, a super_admin for all.
        topic: what the channel hears about.
        channel: ``platform:id`` of the channel the command was typed in.
        vm: only this VM (name or VMID), for backups and jobs.
        only_failures: only failed runs and jobs.
        everyone: a provider channel: every company's events.

    Returns:
        The subscription and whether it is new (the same one typed again is not added twice).

    Raises:
        PermissionDenied: the role may not manage notifications, or the topic is the provider's.
        InvalidArguments: the principal is not of exactly one company and did not say ``--all``.
    """
    rbac.require(principal, rbac.Perm.NOTIFY_MANAGE)
    company_id = _company_for(principal, everyone=everyone, topic=topic)
    vm = _one_vm(deps, principal, vm, topic=topic) if vm else None
    with deps.uow_factory(principal.scope) as uow:
        company = uow.companies.get(company_id) if company_id is not None else None
        if topic is Topic.APPROVALS and company is not None and channels.named_by(company) == channel:
            # the cards themselves go there, and are edited with each decision: a subscription would repeat them
            raise Conflict(f"this channel is {company.slug}'s approvers channel: it hears of every approval "
                           "request and decision already (the cards themselves)")
        for existing in uow.subscriptions.list(topic=topic):
            if (existing.company_id, existing.channel, existing.vm, existing.only_failures) == (
                    company_id, channel, vm, only_failures):
                return existing, False
        subscription = Subscription(company_id=company_id, topic=topic, channel=channel, vm=vm,
                                    only_failures=only_failures, created_by=principal.user_id,
                                    created_at=deps.clock.now())
        uow.subscriptions.add(subscription)
        uow.commit()
    return subscription, True


def _one_vm(deps: Deps, principal: Principal, ref: str, *, topic: Topic) -> str:
    """What a ``--vm`` subscription matches: a VM in the caller's scope, by the name or the VMID typed."""
    if topic in PROVIDER_TOPICS:
        raise InvalidArguments(f"--vm is not for the {topic.value} topic")
    # a typo or another company's VM would match nothing, silently and forever: refuse it now
    owned = inventory.find(deps, principal, ref)
    typed = ref.strip()
    return owned.guest.name if typed.lower() == owned.guest.name.lower() else str(owned.guest.vmid)


@dataclass(frozen=True)
class Listed:
    subscription: Subscription
    pending: int
    # why its channel cannot be posted into yet (a Teams channel the bot was never added to); None: it can
    waiting: str | None = None


def list_subscriptions(deps: Deps, principal: Principal) -> list[Listed]:
    """The subscriptions of the principal's companies (and, for super_admins, the provider's)."""
    rbac.require(principal, rbac.Perm.NOTIFY_READ)
    with deps.uow_factory(principal.scope) as uow:
        found = uow.subscriptions.list()
        listed = []
        for s in found:
            if s.id is not None:
                resolution = channels.resolve(uow, s.channel)
                listed.append(Listed(s, uow.outbox.pending(s.id), resolution.problem if resolution.waiting else None))
        return listed


@dataclass(frozen=True)
class ApproversChannel:
    """A company's approvers channel (``approval_policy.approvers_channel``): its approvals subscription of
    the older kind, where the approval cards themselves go; the provisioning file keeps it."""

    company: Company
    channel: str
    # why pvebot cannot post there yet; None: it can
    waiting: str | None


def approvers_channels(deps: Deps, principal: Principal) -> list[ApproversChannel]:
    """The approvers channels of the principal's companies, listed beside their subscriptions."""
    rbac.require(principal, rbac.Perm.NOTIFY_READ)
    return [ApproversChannel(company, r.name, r.problem if r.waiting else None)
            for company, r in channels.approvers_channels(deps.uow_factory, principal)]


def describe_approvers(found: ApproversChannel) -> tuple[str, ...]:
    """Its row of ``notify list``, in the columns of :func:`describe`."""
    state = "active (approval policy)" if found.waiting is None else f"waiting: {found.waiting} (approval policy)"
    return ("—", Topic.APPROVALS.value, found.company.slug, found.channel, "approval cards, with their buttons",
            state, "—")


def unsubscribe(deps: Deps, principal: Principal, subscription_id: int) -> Subscription:
    """Remove a subscription (and what it had still to send).

    Raises:
        NotFound: no such subscription in the principal's scope (another company's answers alike).
        PermissionDenied: the role may not manage notifications.
    """
    with deps.uow_factory(principal.scope) as uow:
        found = uow.subscriptions.get(subscription_id)
        if found is None:
            raise NotFound(f"subscription {subscription_id} not found")
        rbac.require(principal, rbac.Perm.NOTIFY_MANAGE, found.company_id)
        uow.subscriptions.remove(found)
        uow.commit()
    return found


def test(deps: Deps, principal: Principal, *, channel: str) -> int:
    """Queue a test message to each of the principal's subscriptions of ``channel``; how many were queued.

    Raises:
        NotFound: this channel has no subscription in the principal's scope.
    """
    rbac.require(principal, rbac.Perm.NOTIFY_MANAGE)
    now = deps.clock.now()
    with deps.uow_factory(principal.scope) as uow:
        mine = [s for s in uow.subscriptions.list() if s.channel == channel and s.id is not None]
        if not mine:
            raise NotFound("this channel has no subscription; type 'notify subscribe <topic>' here first")
        reply = Reply(title="pvebot test notification",
                      text="Notifications for this channel work: " + ", ".join(sorted({s.topic.value for s in mine})))
        queued = 0
        for s in mine:
            assert s.id is not None
            queued += _queue(uow, s, key=f"test:{now.isoformat()}", reply=reply, summary="test notification",
                             failed=False, clock=deps.clock)
        uow.commit()
    return queued


# ---- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One VM's part of an event (a guest of a backup run): who owns it decides who hears of it."""

    cluster: str
    vmid: int
    name: str
    company_id: int | None
    failed: bool
    status: str  # "ok", "warnings", "failed"
    detail: str = ""  # the reason of a failure, or time and size

    @property
    def label(self) -> str:
        return self.name or str(self.vmid)


@dataclass(frozen=True)
class Event:
    """Something subscribers may hear about, as one value (pushed or pulled, it is the same event).

    ``key`` identifies it (``vzdump:<cluster>:<node>:<upid>``, ``job:<id>``). An event about one
    company says ``company_id``; a backup run says it per item and is split per company.
    """

    topic: Topic
    key: str
    title: str
    text: str = ""
    company_id: int | None = None
    failed: bool = False
    items: tuple[Item, ...] = ()
    # the VM (name or VMID) a job or approval is about, for ``--vm`` subscriptions
    vm: str | None = None
    vmid: int | None = None


def _matches_vm(subscription: Subscription, name: str | None, vmid: int | None) -> bool:
    wanted = subscription.vm
    return wanted is None or wanted == name or (vmid is not None and wanted == str(vmid))


def message_for(subscription: Subscription, event: Event) -> tuple[Reply, str, bool] | None:
    """What ``subscription`` hears of ``event``: the reply, a digest line and whether it is a failure; None: nothing.

    The tenant rule lives here: a company's subscription is given only its own items, and an event of
    another company not at all.
    """
    if subscription.topic is not event.topic or subscription.state is not SubscriptionState.ACTIVE:
        return None
    provider = subscription.company_id is None
    if not event.items:
        if not provider and event.company_id != subscription.company_id:
            return None
        if event.topic in PROVIDER_TOPICS and not provider:
            return None
        if subscription.only_failures and not event.failed:
            return None
        if not _matches_vm(subscription, event.vm, event.vmid):
            return None
        severity = Severity.ERROR if event.failed else Severity.INFO
        return Reply(title=event.title, text=event.text, severity=severity), event.title[:300], event.failed
    items = [i for i in event.items if provider or i.company_id == subscription.company_id]
    items = [i for i in items if _matches_vm(subscription, i.name, i.vmid)]
    if subscription.only_failures:
        items = [i for i in items if i.failed]
    if not items:
        return None
    failed = [i for i in items if i.failed]
    counts = f"{len(items) - len(failed)} ok, {len(failed)} failed" if failed else f"{len(items)} ok"
    title = f"{event.title}: {counts}"
    rows = tuple((f"{i.label} ({i.cluster}/{i.vmid})", i.status, i.detail[:200]) for i in items)
    summary = f"{event.title}: {counts}" + (": " + ", ".join(i.label for i in failed[:5]) if failed else "")
    reply = Reply(title=title, severity=Severity.ERROR if failed else Severity.SUCCESS,
                  table=Table(columns=("vm", "status", "detail"), rows=rows))
    return reply, summary[:300], bool(failed)


def _queue(uow: UnitOfWork, subscription: Subscription, *, key: str, reply: Reply, summary: str, failed: bool,
           clock: Clock) -> int:
    assert subscription.id is not None
    now = clock.now()
    added = uow.outbox.add(OutboxMessage(subscription_id=subscription.id, channel=subscription.channel,
                                         event_key=key[:255], reply=reply.to_dict(), summary=summary, failed=failed,
                                         created_at=now, not_before=now))
    return 1 if added else 0


def record(uow: UnitOfWork, event: Event, *, clock: Clock) -> int:
    """Queue ``event`` for every subscription that hears of it, in the caller's (unscoped) unit of work.

    Args:
        uow: the unit of work of the change the event is about; the caller commits.
        event: what happened.
        clock: when it was queued.

    Returns:
        How many messages were queued (an event recorded before queues none again).
    """
    queued = 0
    # every subscription of the topic, whatever the unit of work's scope (an approval is recorded in
    # its requester's): who hears is decided by message_for, the tenant rule
    for subscription in uow.subscriptions.listeners(event.topic):
        found = message_for(subscription, event)
        if found is not None:
            reply, summary, failed = found
            queued += _queue(uow, subscription, key=event.key, reply=reply, summary=summary, failed=failed,
                             clock=clock)
    return queued


def publish(deps: Deps, event: Event) -> int:
    """:func:`record` in a unit of work of its own; how many messages were queued."""
    with deps.uow_factory(Scope.everything()) as uow:
        queued = record(uow, event, clock=deps.clock)
        uow.commit()
    return queued


def job_event(job: Job) -> Event:
    """A settled job's outcome, for the company's ``jobs`` subscribers (and provider channels)."""
    failed = job.state is not JobState.SUCCEEDED
    mark = "✅" if not failed else "❌"
    vmid = job.target.get("vmid")
    return Event(topic=Topic.JOBS, key=f"job:{job.id}", company_id=job.company_id, failed=failed,
                 title=f"{mark} {show_job(job.id)} {job.state.value}: {job.summary}"[:300], text=job.result[:1000],
                 vm=str(job.target.get("name") or "") or None, vmid=vmid if isinstance(vmid, int) else None)


_DECIDED = {
    ApprovalState.PENDING: ("🔔", "requested by"),
    ApprovalState.APPROVED: ("✅", "approved by"),
    ApprovalState.DENIED: ("⛔", "denied by"),
    ApprovalState.EXPIRED: ("⌛", "expired: nobody decided; closed by"),
    ApprovalState.FAILED: ("❌", "could not run; closed by"),
}


def approval_event(approval: ApprovalRequest, *, by: str) -> Event:
    """A new approval request or its decision, for the company's ``approvals`` subscribers (and the provider's).

    Args:
        approval: the request, in the state it has just been stored in.
        by: who asked or decided (a name of the company's own people, or pvebot).
    """
    mark, verb = _DECIDED.get(approval.state, ("•", f"{approval.state.value} by"))
    target = approval.target.get("detail") or approval.target.get("label") or approval.target.get("name") or "?"
    what = f"{show_approval(approval.id)} {approval.action} on {target}"
    detail = approval.reason if approval.state is ApprovalState.PENDING else approval.decision_note
    text = f"{verb} {by}" + (f": {detail}" if detail else "")
    if approval.state is ApprovalState.PENDING:
        shown = show_approval(approval.id)
        text += f"\nexpires {approval.expires_at:%Y-%m-%d %H:%M} UTC; decide with 'approve {shown}'"
    vmid = approval.target.get("vmid")
    failed = approval.state in (ApprovalState.DENIED, ApprovalState.EXPIRED, ApprovalState.FAILED)
    return Event(topic=Topic.APPROVALS, key=f"approval:{approval.id}:{approval.state.value}",
                 company_id=approval.company_id, failed=failed, title=f"{mark} {what}"[:300], text=text[:1000],
                 vm=str(approval.target.get("name") or "") or None, vmid=vmid if isinstance(vmid, int) else None)


def digest(messages: list[tuple[str, bool]]) -> Reply:
    """One message for several waiting in one channel: counts, the failures named, then each line."""
    failed = [s for s, f in messages if f]
    head = f"{len(messages)} notifications" + (f", {len(failed)} failed" if failed else "")
    lines = [("❌ " if f else "• ") + s for s, f in messages[:_DIGEST_LINES]]
    if len(messages) > _DIGEST_LINES:
        lines.append(f"…and {len(messages) - _DIGEST_LINES} more")
    return Reply(title=head, text="\n".join(lines), severity=Severity.ERROR if failed else Severity.INFO,
                 fields=(Field("failed", str(len(failed))),) if failed else ())


def describe(listed: Listed, *, company_slug: str | None, now: datetime) -> tuple[str, ...]:
    """A row of ``notify list``: id, topic, for whom, channel, filters, state and last delivery."""
    s = listed.subscription
    filters = ", ".join(x for x in (f"vm {s.vm}" if s.vm else "", "failures only" if s.only_failures else "") if x)
    state = s.state.value + (f": {s.problem}" if s.problem else "")
    if listed.waiting and s.state is SubscriptionState.ACTIVE:
        state = f"waiting: {listed.waiting}"
    if s.declared:
        state += " (declared)"
    if listed.pending:
        state += f" ({listed.pending} waiting)"
    last = timefmt.stamp(s.last_delivery_at, now=now) if s.last_delivery_at else "never"
    return (str(s.id), s.topic.value, company_slug or "every company", s.channel, filters or "—", state, last)

