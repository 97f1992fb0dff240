"""Short, unguessable ids for jobs and approval requests, and how chat shows them."""

from __future__ import annotations

import re
import secrets

from core.errors import InvalidArguments

_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: people type these from screens
_ID_RE = re.compile(rf"^[{_ALPHABET}]{{6,32}}$")


def new_id(length: int = 10) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def show_job(job_id: str) -> str:
    return f"job-{job_id}"


def show_approval(approval_id: str) -> str:
    return f"apr-{approval_id}"


def _parse(text: str, prefix: str, what: str) -> str:
    """``text`` as a bare id (its prefix dropped); ``what`` names the kind with its article ("an approval")."""
    raw = text.strip().lower()
    if raw.startswith(prefix + "-"):
        raw = raw[len(prefix) + 1 :]
    if not _ID_RE.match(raw):
        raise InvalidArguments(f"'{text[:40]}' is not {what} id (they look like {prefix}-k3m9x2)")
    return raw


def parse_job_id(text: str) -> str:
    return _parse(text, "job", "a job")


def parse_approval_id(text: str) -> str:
    return _parse(text, "apr", "an approval")
