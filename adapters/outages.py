"""Telling an outage from a bug: the database or Redis not answering is said as such, without a traceback.

A command that meets a dropped database connection is not an "internal error" the user can do nothing
about: it is "the database is unavailable; try again in a minute", and the log needs one line, not a
stack. Anything else stays an internal error with its reference and traceback.
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

DATABASE = "the database is unavailable; try again in a minute"
QUEUE = "the job queue is unavailable; try again in a minute"


def describe(error: BaseException) -> str | None:
    """What to tell the user when ``error`` (or what caused it) is an outage; None when it is not one."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OperationalError | InterfaceError) or (
                isinstance(current, DBAPIError) and current.connection_invalidated):
            return DATABASE
        if isinstance(current, RedisConnectionError | RedisTimeoutError):
            return QUEUE
        current = current.__cause__ or current.__context__
    return None
