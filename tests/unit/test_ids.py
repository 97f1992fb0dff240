"""Job and approval ids as people type them: with or without their prefix, in any case, or refused in words."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.errors import InvalidArguments
from core.ids import new_id, parse_approval_id, parse_job_id, show_approval, show_job


def test_an_id_reads_back_with_or_without_its_prefix() -> None:
    raw = new_id()
    assert parse_job_id(show_job(raw)) == parse_job_id(raw) == parse_job_id(f" JOB-{raw.upper()} ") == raw
    assert parse_approval_id(show_approval(raw)) == raw


@pytest.mark.parametrize(("parse", "message"), [
    (parse_job_id, "'nonsense!' is not a job id (they look like job-k3m9x2)"),
    (parse_approval_id, "'nonsense!' is not an approval id (they look like apr-k3m9x2)"),
])
def test_what_is_not_an_id_is_refused_in_plain_words(parse: Callable[[str], str], message: str) -> None:
    with pytest.raises(InvalidArguments) as caught:
        parse("nonsense!")
    assert caught.value.user_message == message
