"""Times as people read them in chat: relative and absolute, with a date that cannot be misread.

Cards are read hours or days after they were posted, by people in several timezones, so an
absolute time always says UTC, and a date either carries its year or says today/yesterday.
"""

from __future__ import annotations

from datetime import UTC, datetime


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def day(moment: datetime, *, now: datetime) -> str:
    """``today``, ``yesterday``, ``tomorrow``, or the date with its year (``2026-11-30``)."""
    delta = (_utc(moment).date() - _utc(now).date()).days
    return {0: "today", -1: "yesterday", 1: "tomorrow"}.get(delta, f"{_utc(moment):%Y-%m-%d}")


def absolute(moment: datetime, *, now: datetime) -> str:
    """``22:38 UTC`` today, else ``yesterday 22:38 UTC`` or ``2026-11-30 22:38 UTC``."""
    when = day(moment, now=now)
    clock = f"{_utc(moment):%H:%M} UTC"
    return clock if when == "today" else f"{when} {clock}"


def stamp(moment: datetime, *, now: datetime) -> str:
    """A date and time for lists: ``today 22:08``, ``yesterday 09:15``, ``2026-11-30 22:08`` (all UTC)."""
    return f"{day(moment, now=now)} {_utc(moment):%H:%M}"


def span(seconds: float) -> str:
    """A duration in the largest sensible unit: ``40 s``, ``30 min``, ``2 h 5 min``, ``3 days``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {rest} min" if rest else f"{hours} h"
    return f"{round(hours / 24)} days"


def relative(moment: datetime, *, now: datetime) -> str:
    """``in 30 min, 22:38 UTC``, ``12 min ago, 21:56 UTC`` or ``just now, 21:56 UTC``: how far, then when."""
    delta = (_utc(moment) - _utc(now)).total_seconds()
    if abs(delta) < 30:
        return f"just now, {absolute(moment, now=now)}"
    far = span(abs(delta))
    return f"{'in ' + far if delta >= 0 else far + ' ago'}, {absolute(moment, now=now)}"
