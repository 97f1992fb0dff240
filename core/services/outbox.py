"""Sending the notification outbox: one message a second per channel at most, retried within a bound, once.

Each pass takes the due rows, groups them by channel and sends each channel at most one message:
the row itself, or one digest of every row waiting there (a burst of 13 backups is one message).
A row is claimed (one conditional UPDATE, with a lease) before it is sent and settled after, so two
senders never send the same row, and a sender that dies before sending leaves it to the next one
once the lease runs out. (A sender that dies after the platform took the message but before it
settled the row would send it again: chat platforms take no idempotency key, so this is the one
window left; it is as short as one UPDATE.)

A 429 or 5xx postpones the rows (the platform's Retry-After, else exponential backoff) until
``retry_for`` after they were written; then they are dropped. A channel the platform says is gone
marks its subscriptions broken (the owner is told once, where the company has an approvers channel
to tell) and drops what it had to send.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from core.chat import Reply, Severity
from core.errors import ChannelGone, Throttled
from core.model import OutboxMessage, OutboxState
from core.ports import UnitOfWork
from core.principal import Scope
from core.services import channels, notifications
from core.services.deps import Deps

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """How the sender paces and bounds its work (tests shrink the times; production keeps these)."""

    interval: timedelta = timedelta(seconds=1)
    lease: timedelta = timedelta(seconds=60)
    retry_for: timedelta = timedelta(hours=6)
    max_backoff: timedelta = timedelta(minutes=5)
    # a Teams channel the bot has not been written to yet: look again this often
    waiting_retry: timedelta = timedelta(minutes=1)


@dataclass
class Pass:
    """What one pass did, for logs, tests and the benchmark."""

    sent: int = 0  # messages posted (a digest is one)
    rows: int = 0  # outbox rows they carried
    postponed: int = 0
    dropped: int = 0
    broken: list[str] = field(default_factory=list)


def _backoff(policy: Policy, attempts: int, retry_after: float | None) -> timedelta:
    if retry_after is not None:
        return min(policy.max_backoff, timedelta(seconds=max(retry_after, 0.0)))
    return min(policy.max_backoff, timedelta(seconds=2 ** min(attempts, 10)))


def deliver_due(deps: Deps, *, policy: Policy | None = None, limit: int = 500) -> Pass:
    """One pass over the outbox: send what is due, one message per channel at most.

    Args:
        deps: ports (the notifier posts; the clock says what is due).
        policy: pacing and bounds.
        limit: rows looked at in this pass.

    Returns:
        What was sent, postponed and dropped.
    """
    policy = policy or Policy()
    done = Pass()
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        due = uow.outbox.due(now=now, limit=limit)
        by_channel: dict[str, list[OutboxMessage]] = {}
        for message in due:
            by_channel.setdefault(message.channel, []).append(message)
        ready: dict[str, list[OutboxMessage]] = {}
        for channel, messages in by_channel.items():
            last = uow.outbox.last_sent(channel)
            if last is not None and now - last < policy.interval:
                continue  # this channel's turn comes next pass
            claimed = [m for m in messages if m.id is not None and
                       uow.outbox.claim(m.id, now=now, until=now + policy.lease)]
            if claimed:
                ready[channel] = claimed
        uow.commit()
    for channel, messages in ready.items():
        _send(deps, policy, channel, messages, done)
    return done


def _send(deps: Deps, policy: Policy, channel: str, messages: list[OutboxMessage], done: Pass) -> None:
    ids = [m.id for m in messages if m.id is not None]
    with deps.uow_factory(Scope.everything()) as uow:
        resolution = channels.resolve(uow, channel)
    if resolution.channel is None:
        _postpone(deps, policy, messages, retry_after=policy.waiting_retry.total_seconds(), done=done)
        return
    if len(messages) == 1:
        reply = Reply.from_dict(messages[0].reply)
    else:
        reply = notifications.digest([(m.summary, m.failed) for m in messages])
    try:
        deps.notifier.post(resolution.channel.conversation(), reply)
    except ChannelGone as e:
        _broken(deps, channel, messages, why=e.user_message, done=done)
        return
    except Throttled as e:
        _postpone(deps, policy, messages, retry_after=e.retry_after, done=done)
        return
    except Exception:
        # an outage of ours or theirs: try again later, within the bound
        log.warning("could not send %d notification(s) to a %s channel", len(ids), channel.split(":", 1)[0],
                    exc_info=True)
        _postpone(deps, policy, messages, retry_after=None, done=done)
        return
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        uow.outbox.settle(ids, to=OutboxState.SENT, at=now)
        uow.subscriptions.delivered({m.subscription_id for m in messages}, at=now)
        uow.commit()
    done.sent += 1
    done.rows += len(ids)


def _postpone(deps: Deps, policy: Policy, messages: list[OutboxMessage], *, retry_after: float | None,
              done: Pass) -> None:
    now = deps.clock.now()
    expired = [m.id for m in messages if m.id is not None and now - m.created_at >= policy.retry_for]
    later = [m for m in messages if m.id is not None and m.id not in expired]
    with deps.uow_factory(Scope.everything()) as uow:
        if expired:
            uow.outbox.settle(expired, to=OutboxState.DROPPED, at=now)
        if later:
            attempts = max(m.attempts for m in later)
            uow.outbox.postpone([m.id for m in later if m.id is not None],
                                until=now + _backoff(policy, attempts, retry_after))
        uow.commit()
    if expired:
        log.warning("dropped %d notification(s) that could not be sent within %s", len(expired), policy.retry_for)
    done.postponed += len(later)
    done.dropped += len(expired)


def _broken(deps: Deps, channel: str, messages: list[OutboxMessage], *, why: str, done: Pass) -> None:
    now = deps.clock.now()
    newly: list[int] = []
    with deps.uow_factory(Scope.everything()) as uow:
        for subscription_id in sorted({m.subscription_id for m in messages}):
            if uow.subscriptions.mark_broken(subscription_id, problem=why):
                newly.append(subscription_id)
        # everything else waiting for that channel goes too: it would fail alike
        uow.outbox.settle([m.id for m in messages if m.id is not None], to=OutboxState.DROPPED, at=now)
        told = [s for s in (uow.subscriptions.get(i) for i in newly) if s is not None]
        for s in told:
            _tell_owner(uow, deps, s.company_id, channel, s.id)
        uow.commit()
    log.warning("a %s channel is gone; %d subscription(s) marked broken", channel.split(":", 1)[0], len(newly))
    done.broken.append(channel)
    done.dropped += len(messages)


def _tell_owner(uow: UnitOfWork, deps: Deps, company_id: int | None, channel: str, subscription_id: int | None) -> None:
    """Queue one message to the company's approvers channel saying a subscription stopped (once: see mark_broken)."""
    company = uow.companies.get(company_id) if company_id is not None else None
    target = channels.named_by(company)
    if target is None or target == channel or subscription_id is None:
        return
    shown = channel if len(channel) <= 60 else channel[:59] + "…"
    reply = Reply(title="A notification channel stopped", severity=Severity.WARNING,
                  text=f"pvebot can no longer post into {shown} (subscription {subscription_id}): it is gone, "
                       "archived, or pvebot was removed from it. Subscribe again from a channel pvebot is in.")
    # the approvers channel is not a subscription: the row rides on the broken subscription's id
    # (so it goes when the subscription is removed), addressed to the approvers channel
    now = deps.clock.now()
    uow.outbox.add(OutboxMessage(subscription_id=subscription_id, channel=target, event_key=f"broken:{subscription_id}",
                                 reply=reply.to_dict(), summary=reply.title or "", failed=True, created_at=now,
                                 not_before=now))
