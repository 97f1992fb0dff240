"""The audit trail: every state change, command, approval and job outcome goes through :func:`record`."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from core import rbac
from core.errors import InvalidArguments
from core.model import AuditEvent
from core.ports import Clock, UnitOfWork
from core.principal import Principal

# detail keys whose values are never stored, whatever a caller passes
_SECRET_KEYS = re.compile(r"secret|password|token_value|private|key$", re.IGNORECASE)


def _scrub(detail: dict[str, Any]) -> dict[str, Any]:
    return {k: ("<hidden>" if _SECRET_KEYS.search(k) else v) for k, v in detail.items()}


def record(
    uow: UnitOfWork,
    *,
    clock: Clock,
    actor: str,
    action: str,
    company_id: int | None = None,
    target: str = "",
    outcome: str = "ok",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the audit trail in ``uow``'s transaction (the caller commits).

    Args:
        uow: the open unit of work whose commit makes the event durable with the change it describes.
        clock: gives the event's time.
        actor: who did it (an email, or "system").
        action: dotted name, e.g. ``vm.start`` or ``approval.approved``.
        company_id: the tenant the event belongs to, None for global events.
        target: what it was done to, short and human readable.
        outcome: ``ok``, ``denied``, ``failed``, ``requested`` …
        detail: extra JSON-able facts; keys that look like secrets are hidden.

    Returns:
        The stored event.
    """
    event = AuditEvent(
        at=clock.now(),
        action=action,
        actor=actor,
        company_id=company_id,
        target=target[:300],
        outcome=outcome,
        detail=_scrub(detail or {}),
    )
    uow.audit.append(event)
    return event


_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now: datetime) -> datetime:
    """``24h``, ``30m``, ``7d`` … back from ``now``."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise InvalidArguments(f"'{text}' is not a duration like 30m, 24h or 7d")
    return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def query(
    uow: UnitOfWork,
    principal: Principal,
    *,
    since: datetime | None = None,
    company_id: int | None = None,
    actor: str | None = None,
    limit: int = 500,
) -> list[AuditEvent]:
    """The audit events ``principal`` may read (their scope's), oldest first."""
    rbac.require(principal, rbac.Perm.AUDIT_READ, company_id, what="company")
    return uow.audit.query(since=since, company_id=company_id, actor=actor, limit=limit)


def describe(event: AuditEvent) -> str:
    """One line per event, as ``pvebot admin audit`` and ``audit`` print it."""
    extra = ""
    if event.detail:
        extra = " " + " ".join(f"{k}={v}" for k, v in sorted(event.detail.items()))
    target = f" {event.target}" if event.target else ""
    return f"{event.at:%Y-%m-%d %H:%M:%S}Z {event.actor} {event.action}{target} [{event.outcome}]{extra}"
