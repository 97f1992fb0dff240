"""Wall-clock time, behind a port so that expiry and coalescing can be tested."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
