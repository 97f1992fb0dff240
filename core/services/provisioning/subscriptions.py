"""Notification subscriptions declared in the provisioning file: added, kept, removed by it alone.

A company's ``notifications`` list (and the top-level one, for the provider's channels of every
company) is authoritative over the subscriptions the file declared before, when the key is there;
subscriptions typed in a channel (``notify subscribe``) are never touched. A declared Teams channel
the bot has no conversation reference for yet is created all the same and waits: ``notify list``
and ``pvebot admin apply`` say so, and its messages are kept until the bot is added there.
"""

from __future__ import annotations

from typing import Any

from core.model import Company, Subscription
from core.ports import Clock, UnitOfWork
from core.services import channels
from core.services.provisioning.document import Spec, SubscriptionSpec


def _label(company: Company | None, s: SubscriptionSpec | Subscription) -> str:
    filters = "".join((f" --vm {s.vm}" if s.vm else "", " --only failures" if s.only_failures else ""))
    return f"subscription {s.topic.value} {s.channel}{filters} for {company.slug if company else 'every company'}"


def _sync(uow: UnitOfWork, company: Company | None, declared: tuple[SubscriptionSpec, ...], *, clock: Clock,
          changes: list[str]) -> None:
    company_id = company.id if company is not None else None
    ours = [s for s in uow.subscriptions.list() if s.company_id == company_id]
    have = {(s.topic, s.channel, s.vm, s.only_failures): s for s in ours if s.declared}
    # one typed in the channel already: declaring it again would send every event there twice
    typed = {(s.topic, s.channel, s.vm, s.only_failures) for s in ours if not s.declared}
    wanted = {d.key: d for d in declared}
    for key, d in wanted.items():
        if key not in have and key not in typed:
            uow.subscriptions.add(Subscription(company_id=company_id, topic=d.topic, channel=d.channel, vm=d.vm,
                                               only_failures=d.only_failures, created_by=None,
                                               created_at=clock.now(), declared=True))
            changes.append(f"+ {_label(company, d)}")
    for key, s in have.items():
        if key not in wanted:
            uow.subscriptions.remove(s)
            changes.append(f"- {_label(company, s)}")


def apply(uow: UnitOfWork, spec: Spec, *, clock: Clock, changes: list[str]) -> None:
    """Bring the declared subscriptions to ``spec`` (companies already applied), in the caller's unscoped ``uow``."""
    if spec.notifications is not None:
        _sync(uow, None, spec.notifications, clock=clock, changes=changes)
    for co in spec.companies:
        if co.notifications is not None:
            company = uow.companies.by_slug(co.slug)
            if company is not None:
                _sync(uow, company, co.notifications, clock=clock, changes=changes)


def export(uow: UnitOfWork, company: Company | None) -> list[dict[str, Any]]:
    """The declared subscriptions of ``company`` (None: the provider's), in the file's shape."""
    company_id = company.id if company is not None else None
    out: list[dict[str, Any]] = []
    for s in uow.subscriptions.list():
        if s.declared and s.company_id == company_id:
            entry: dict[str, Any] = {"topic": s.topic.value, "channel": s.channel}
            if s.vm:
                entry["vm"] = s.vm
            if s.only_failures:
                entry["only_failures"] = True
            out.append(entry)
    return out


def waiting(uow: UnitOfWork) -> list[str]:
    """One line per declared or typed subscription whose channel cannot be posted into yet."""
    lines = []
    for s in uow.subscriptions.list():
        resolution = channels.resolve(uow, s.channel)
        if resolution.waiting:
            lines.append(f"! subscription {s.id} ({s.topic.value}) waits: {s.channel}: {resolution.problem}")
    return lines
