"""Housekeeping every pvebot process runs in the background: dead jobs and expired approvals."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from core.services import approvals, jobs
from core.services.deps import Deps

log = logging.getLogger(__name__)


def sweep(deps: Deps, *, stale_after: timedelta, queued_before: datetime | None = None) -> int:
    """One pass: fail jobs whose worker died, expire approvals past their time."""
    count = jobs.reap(deps, stale_after=stale_after, queued_before=queued_before)
    count += approvals.expire_due(deps)
    return count


class Maintenance:
    """Runs :func:`sweep` every ``interval`` seconds in a daemon thread."""

    def __init__(self, deps: Deps, *, interval: float = 10.0, stale_after: timedelta = timedelta(seconds=60)) -> None:
        self.deps, self.interval, self.stale_after = deps, interval, stale_after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pvebot-maintenance", daemon=True)

    def start(self, *, embedded_queue: bool) -> Maintenance:
        # an in-process queue dies with its process: what it held before we started can never run
        before = self.deps.clock.now() if embedded_queue else None
        try:
            sweep(self.deps, stale_after=self.stale_after, queued_before=before)
        except Exception:
            log.exception("maintenance sweep failed")
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sweep(self.deps, stale_after=self.stale_after)
            except Exception:
                log.exception("maintenance sweep failed")

    def stop(self) -> None:
        self._stop.set()
