"""What a process keeps of who-is-who and who-owns-what between commands, for as long as it is true.

Every command needs the caller's principal and the map of pools to companies; read afresh they cost
six SQL statements, and they change a few times a day. A value kept here is handed out again only
while the store's directory version (see :meth:`core.ports.UnitOfWork.directory_version`) is the one
it was read at, which one primary-key read tells: a role taken away in another process counts from
the next command on. ``max_age`` bounds the life of a value anyway, for a change made behind
pvebot's back (an operator's SQL).

A command reads the version once, with its principal, and :meth:`DirectoryCache.pinned` keeps it
for the rest of the command: the command sees the directory as it was when it began.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from core.ports import Clock

_MAX_ENTRIES = 10_000
_pinned: ContextVar[int | None] = ContextVar("pvebot_directory_version", default=None)


class DirectoryCache:
    """Values keyed by anything hashable, valid at one directory version; thread-safe."""

    def __init__(self, *, clock: Clock, max_age: float = 30.0) -> None:
        self._clock = clock
        self._max_age = max_age
        self._lock = threading.Lock()
        self._version: int | None = None
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def get(self, version: int | None, key: Hashable) -> Any | None:
        """The value kept for ``key`` at ``version``; None when there is none, or it is of another version."""
        if version is None:
            return None
        with self._lock:
            if version != self._version:
                return None
            found = self._entries.get(key)
            if found is None or self._clock.monotonic() - found[0] > self._max_age:
                return None
            return found[1]

    def put(self, version: int | None, key: Hashable, value: Any) -> None:
        """Keep ``value`` for ``key``, read at ``version``; a newer version drops everything older."""
        if version is None:
            return
        with self._lock:
            if self._version is not None and version < self._version:
                return  # a slow reader's old value: newer ones are kept already
            if version != self._version or len(self._entries) >= _MAX_ENTRIES:
                self._version, self._entries = version, {}
            self._entries[key] = (self._clock.monotonic(), value)

    @contextmanager
    def pinned(self, version: int | None) -> Iterator[None]:
        """Within the block (one command, in its thread), :meth:`pin` answers ``version`` without asking."""
        token = _pinned.set(version)
        try:
            yield
        finally:
            _pinned.reset(token)

    @staticmethod
    def pin() -> int | None:
        """The version pinned for the work in progress, if any."""
        return _pinned.get()
