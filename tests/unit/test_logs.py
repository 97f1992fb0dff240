"""Log lines: text by default, JSON on request, both tagged with the work's context and free of secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.config import Settings
from bot.logs import configure
from core import logcontext

SECRET = "xoxb-1234567890-abcdefghij"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_request_job_company_and_user_and_no_secret(restore_logging: None) -> None:
    out = io.StringIO()
    configure(level="INFO", json_format=True, secrets=[SECRET], stream=out)
    with logcontext.bound(request_id="req-1", user="bob@acme.example", company=7):
        with logcontext.bound(job_id="job-abc"):
            logging.getLogger("pvebot.test").warning("posting with %s failed", SECRET)
        logging.getLogger("pvebot.test").info("after the job")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first == {**first, "level": "WARNING", "logger": "pvebot.test", "request_id": "req-1", "job_id": "job-abc",
                     "company": "7", "user": "bob@acme.example", "message": "posting with [redacted] failed"}
    assert "job_id" not in second and second["request_id"] == "req-1"
    assert SECRET not in out.getvalue()


def test_text_stays_the_default_with_the_context_in_brackets(restore_logging: None) -> None:
    settings = Settings.from_mapping({})
    assert settings.log_format == "text"
    out = io.StringIO()
    configure(level="INFO", json_format=False, secrets=[SECRET], stream=out)
    with logcontext.bound(job_id="job-abc"):
        logging.getLogger("x").info("token %s", SECRET)
    line = out.getvalue().strip()
    assert line.endswith("INFO x [job_id=job-abc]: token [redacted]") and not line.startswith("{")


def test_an_unknown_log_format_is_refused() -> None:
    from bot.config import SettingsError

    with pytest.raises(SettingsError, match="PVEBOT_LOG_FORMAT"):
        Settings.from_mapping({"PVEBOT_LOG_FORMAT": "xml"})
