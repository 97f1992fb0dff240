"""Who and what a log line is about: the request, job, company and user of the work in progress.

Context variables rather than arguments, so that a line logged deep in an adapter still carries
them; ``asyncio.to_thread`` copies the context into the worker thread, and each job binds its own.
The log formatter (``bot/logs.py``) reads them; nothing here is ever a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("request_id", "job_id", "company", "user")
_vars: dict[str, ContextVar[str | None]] = {name: ContextVar(f"pvebot_{name}", default=None) for name in FIELDS}


@contextmanager
def bound(**values: str | int | None) -> Iterator[None]:
    """Bind ``values`` (names from :data:`FIELDS`) for the duration of the block.

    Args:
        values: e.g. ``request_id="…", user="alice@acme.example"``; None leaves a field as it is.

    Raises:
        KeyError: for a name that is not one of :data:`FIELDS`.
    """
    tokens = [(_vars[name], _vars[name].set(str(value))) for name, value in values.items() if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, str]:
    """The fields bound now, without the unset ones."""
    return {name: value for name, var in _vars.items() if (value := var.get()) is not None}
