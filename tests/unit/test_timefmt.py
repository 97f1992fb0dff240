"""Times in chat: relative and absolute, and a date that carries its year unless it is today or yesterday."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core import timefmt

NOW = datetime(2026, 12, 1, 22, 8, tzinfo=UTC)


def test_relative_says_how_far_then_when() -> None:
    assert timefmt.relative(NOW + timedelta(minutes=30), now=NOW) == "in 30 min, 22:38 UTC"
    assert timefmt.relative(NOW - timedelta(minutes=12), now=NOW) == "12 min ago, 21:56 UTC"
    assert timefmt.relative(NOW, now=NOW) == "just now, 22:08 UTC"
    assert timefmt.relative(NOW + timedelta(hours=3), now=NOW) == "in 3 h, tomorrow 01:08 UTC"


def test_dates_are_today_yesterday_or_carry_the_year() -> None:
    assert timefmt.stamp(NOW - timedelta(hours=1), now=NOW) == "today 21:08"
    assert timefmt.stamp(NOW - timedelta(days=1), now=NOW) == "yesterday 22:08"
    assert timefmt.stamp(NOW - timedelta(days=2), now=NOW) == "2026-11-29 22:08"
    assert timefmt.absolute(datetime(2025, 12, 1, 22, 8, tzinfo=UTC), now=NOW) == "2025-12-01 22:08 UTC"
    # a naive time is taken as UTC
    assert timefmt.absolute(datetime(2026, 12, 1, 7, 5), now=NOW) == "07:05 UTC"


def test_spans() -> None:
    assert [timefmt.span(s) for s in (40, 1800, 7500, 3 * 86400)] == ["40 s", "30 min", "2 h 5 min", "3 days"]
