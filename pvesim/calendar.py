"""Proxmox calendar events (``pve-calendar-event``), the subset backup schedules use.

``[WEEKDAY[..WEEKDAY][,...]] [HOURS:]MINUTES`` plus the special words (``daily``, ``weekly``, ...),
read the way proxmox-time reads them: a lone number is a minute (``mon..fri 22`` runs at minute 22
of every hour), hours and minutes take lists, ranges and ``*``/``start/step`` repetitions. Date
parts (``*-1..7``) are not simulated and are refused like any other unparsable text. The simulated
nodes keep UTC as their local time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pvesim.state import ApiError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SPECIAL = {
    "minutely": "*:*", "hourly": "*:0", "daily": "0:0", "weekly": "mon 0:0", "monthly": None, "yearly": None,
    "annually": None, "quarterly": None, "semiannually": None,
}


@dataclass(frozen=True)
class Event:
    days: frozenset[int]
    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    # monthly/yearly specials: runs on the first day of these months only
    months: frozenset[int] | None = None


def _error(text: str, rest: str, context: str) -> ApiError:
    message = f"invalid calendar event '{text}' - unable to parse calendar event at '{rest}' - Context(\"{context}\")"
    return ApiError(400, "Parameter verification failed.", errors={"schedule": message})


def _values(spec: str, *, high: int) -> tuple[int, ...] | None:
    found: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"(\*|\d+)(?:\.\.(\d+))?(?:/(\d+))?", part)
        if not m:
            return None
        start = 0 if m.group(1) == "*" else int(m.group(1))
        end = int(m.group(2)) if m.group(2) else (high if m.group(1) == "*" or m.group(3) else start)
        step = int(m.group(3) or 1)
        if start > high or end > high or step == 0:
            return None
        found.update(range(start, end + 1, step))
    return tuple(sorted(found))


def parse(text: str) -> Event:
    """The event ``text`` names; raises the 400 PVE answers to a bad ``schedule``."""
    words = text.strip().lower().split()
    if len(words) == 1 and words[0] in SPECIAL:
        word = words[0]
        months = {"monthly": range(1, 13), "yearly": (1,), "annually": (1,), "quarterly": (1, 4, 7, 10),
                  "semiannually": (1, 7)}.get(word)
        if months is not None:
            return Event(frozenset(range(7)), (0,), (0,), frozenset(months))
        words = str(SPECIAL[word]).split()
    if not words or len(words) > 2:
        raise _error(text, text, "weekday")
    days = frozenset(range(7))
    if len(words) == 2 or not re.match(r"[\d*]", words[0]):
        days_spec = words.pop(0)
        picked: set[int] = set()
        for part in days_spec.split(","):
            ends = part.split("..")
            if len(ends) > 2 or any(e not in DAYS for e in ends):
                raise _error(text, text[text.lower().find(part):], "weekday")
            first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
            picked.update(range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)])
        days = frozenset(picked)
        if not words:
            return Event(days, (0,), (0,))
    time_spec = words[0]
    hours_spec, _, minutes_spec = time_spec.rpartition(":")
    hours = _values(hours_spec, high=23) if hours_spec else tuple(range(24))
    minutes = _values(minutes_spec, high=59)
    if hours is None or minutes is None or time_spec.count(":") > 2:
        raise _error(text, text[text.lower().find(time_spec):], "time")
    return Event(days, hours, minutes)


def next_runs(event: Event, *, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` times strictly after ``after`` (UTC, whole minutes)."""
    runs: list[datetime] = []
    start = after.astimezone(UTC).replace(second=0, microsecond=0)
    day = start.replace(hour=0, minute=0)
    for _ in range(3700):  # ten years of days is more than any listed event needs
        if day.weekday() in event.days and (event.months is None or (day.day == 1 and day.month in event.months)):
            for hour in event.hours:
                for minute in event.minutes:
                    at = day.replace(hour=hour, minute=minute)
                    if at > after:
                        runs.append(at)
                        if len(runs) == count:
                            return runs
        day += timedelta(days=1)
    return runs
