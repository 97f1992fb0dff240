"""Logging set-up: text by default, one JSON object a line with ``PVEBOT_LOG_FORMAT=json``.

Both formats carry the request id, job id, company and user of the work in progress (from
:mod:`core.logcontext`). Secrets stay out because nothing logs them in the first place (drivers'
messages are redacted where they are caught); as a last guard, the formatter replaces any of the
configured secret values that still reaches a line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from core import logcontext

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


class ContextFilter(logging.Filter):
    """Puts the bound context on each record: as fields for JSON, as ``[k=v …]`` for text."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = logcontext.current()
        record.pvebot = fields
        record.context = (" [" + " ".join(f"{k}={v}" for k, v in fields.items()) + "]") if fields else ""
        return True


class _Redacting(logging.Formatter):
    def __init__(self, fmt: str | None, *, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        # short values would blank out ordinary words; real secrets are long
        self._secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class TextFormatter(_Redacting):
    def __init__(self, *, secrets: Iterable[str] = ()) -> None:
        super().__init__(TEXT_FORMAT, secrets=secrets)


class JsonFormatter(_Redacting):
    """``{"ts", "level", "logger", "message", request_id, job_id, company, user, "exc"}``, one a line."""

    def __init__(self, *, secrets: Iterable[str] = ()) -> None:
        super().__init__(None, secrets=secrets)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "pvebot", logcontext.current()),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(entry, ensure_ascii=False, default=str))


def configure(*, level: str, json_format: bool, secrets: Iterable[str] = (), stream: object = None) -> None:
    """Replace the root handlers with one on ``stream`` (stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter(secrets=secrets) if json_format else TextFormatter(secrets=secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def to_file(path: Path) -> Path:
    """Send the log to ``path`` instead of stderr: a chat terminal (``pvebot shell``/``demo``) is for the
    conversation, and a traceback printed between its lines helps nobody there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(old.formatter)
            for f in old.filters:
                handler.addFilter(f)
            root.removeHandler(old)
            root.addHandler(handler)
    return path
