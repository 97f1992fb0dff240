"""bench/load.py counts a job's verdict only by how its message reads; these keep it reading the same words
as the renderer, which once changed ('✅ done' became 'web-01 is running (done in 3 s)') and left the bench
waiting for verdicts it could no longer see."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from core.model import Job, JobState
from core.services import jobs

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def load() -> ModuleType:
    path = list(sys.path)
    sys.path.insert(0, str(BENCH))  # where its `import _path` is found
    try:
        spec = importlib.util.spec_from_file_location("bench_load", BENCH / "load.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path
    return module


def _message(state: JobState, result: str) -> str:
    now = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
    job = Job(id="abc123", request_id="r", company_id=1, actor_user_id=1, action="vm.start",
              target={"cluster": "lab", "vmid": 100}, params={}, state=state, created_at=now - timedelta(seconds=3),
              started_at=now - timedelta(seconds=2), finished_at=now if state.finished else None,
              summary="vm start web-01", progress="start", result=result)
    reply = jobs.render(job, now=now)
    return f"{reply.title}\n{reply.text}"


@pytest.mark.parametrize(("state", "result"), [
    (JobState.SUCCEEDED, "web-01 is running"), (JobState.SUCCEEDED, "done"), (JobState.FAILED, "refused"),
    (JobState.CANCELLED, "cancelled while running"), (JobState.UNKNOWN, "it may have succeeded"),
])
def test_every_ended_job_reads_as_a_verdict(load: ModuleType, state: JobState, result: str) -> None:
    record = {"calls": [{"status": 200, "method": "chat.update", "text": _message(state, result), "blocks": "",
                         "at": 1.0}]}
    assert set(load._tally(record, n=1)["verdicts"]) == {"job-abc123"}


@pytest.mark.parametrize("state", [JobState.QUEUED, JobState.RUNNING])
def test_a_job_under_way_is_no_verdict(load: ModuleType, state: JobState) -> None:
    record = {"calls": [{"status": 200, "method": "chat.update", "text": _message(state, ""), "blocks": "",
                         "at": 1.0}]}
    assert load._tally(record, n=1)["verdicts"] == {}
