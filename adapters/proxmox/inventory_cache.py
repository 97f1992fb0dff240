"""A cluster's inventory, refreshed ahead of need so that commands rarely wait for a 20,000-guest fetch.

Rules, for ``max_age`` (the oldest answer ever served) and ``refresh_after`` (default half of it):

- younger than ``refresh_after``: served as it is;
- between the two: served as it is while one background thread fetches the next (stale while
  revalidate); no other caller starts a fetch meanwhile;
- older than ``max_age``, or none yet: the caller waits for a fetch, its own or the one under way;
- ``refresh=True``: the caller waits for a fetch that began after it asked (ownership re-checks
  before destructive work must not see an answer from before the request).

Ages are counted from when a fetch *began*, so an answer is never older than it claims. A fetch
that fails leaves the last good answer in place to age out; callers waiting for that fetch get
its error rather than each trying again against a cluster that does not answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from core.errors import BotError
from core.guest_index import GuestIndex

log = logging.getLogger(__name__)


def _thread(work: Callable[[], None]) -> None:
    threading.Thread(target=work, name="inventory-refresh", daemon=True).start()


class InventoryCache:
    """One cluster's :class:`GuestIndex`, fetched with ``fetch`` by at most one thread at a time."""

    def __init__(
        self, fetch: Callable[[], GuestIndex], *, max_age: float, refresh_after: float | None = None,
        clock: Callable[[], float] = time.monotonic, spawn: Callable[[Callable[[], None]], None] = _thread,
    ) -> None:
        self._fetch = fetch
        self.max_age = max_age
        self.refresh_after = max_age / 2 if refresh_after is None else min(refresh_after, max_age)
        self._clock = clock
        self._spawn = spawn
        self._cond = threading.Condition()
        self._index: GuestIndex | None = None
        self._began = 0.0  # when the fetch behind _index began, by the clock
        self._fetching = False
        # fetches are numbered, so that "began after I asked" does not depend on the clock's resolution
        self._started = 0
        self._index_fetch = 0  # the number of the fetch behind _index
        self._finished = 0
        self._error: BotError | None = None  # why the last finished fetch failed, if it did

    def get(self, *, refresh: bool = False) -> GuestIndex:
        """The index, at most ``max_age`` old (fetched after this call began when ``refresh``).

        Raises:
            BotError: the fetch this caller waited for failed (typically ``ExternalSystemError``).
        """
        with self._cond:
            started, finished = self._started, self._finished
            while True:
                index = self._index
                if index is not None:
                    if refresh:
                        if self._index_fetch > started:
                            return index
                    else:
                        age = self._clock() - self._began
                        if age < self.refresh_after:
                            return index
                        if age < self.max_age:
                            if not self._fetching:
                                self._start_background()
                            return index
                if self._error is not None and self._finished > finished:
                    # the fetch we waited for failed: a silent cluster costs one timeout, not one per caller
                    raise self._error
                if not self._fetching:
                    self._fetching = True
                    break
                self._cond.wait()
        return self._run_fetch()

    def _start_background(self) -> None:
        self._fetching = True
        try:
            self._spawn(self._refresh_in_background)
        except RuntimeError:  # no new threads (interpreter shutting down): the next caller fetches itself
            self._fetching = False
            log.warning("could not start a background inventory refresh", exc_info=True)

    def invalidate(self) -> None:
        """Make the next caller fetch (after a change we made ourselves)."""
        with self._cond:
            self._began = min(self._began, self._clock() - self.max_age)

    def _run_fetch(self) -> GuestIndex:
        """Fetch; the caller has set ``_fetching``, so no other fetch runs meanwhile."""
        with self._cond:
            self._started += 1
            number = self._started
        began = self._clock()
        try:
            index = self._fetch()
        except BaseException as e:
            with self._cond:
                self._fetching = False
                self._finished += 1
                self._error = e if isinstance(e, BotError) else None
                self._cond.notify_all()
            raise
        with self._cond:
            self._fetching = False
            self._finished += 1
            self._error = None
            self._index, self._began, self._index_fetch = index, began, number
            self._cond.notify_all()
        return index

    def _refresh_in_background(self) -> None:
        try:
            self._run_fetch()
        except BotError as e:
            # the last good answer stays until it is too old; then callers wait and see this error
            log.warning("background inventory refresh failed: %s", e.user_message)
        except Exception:
            log.exception("background inventory refresh failed")
