"""The code checks the house style asks for: ruff everywhere, mypy --strict on core, commands and jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing() -> None:
    pytest.importorskip("ruff", reason="ruff comes with the dev extra")
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout[-4000:]


def test_mypy_strict_on_core_commands_and_jobs() -> None:
    pytest.importorskip("mypy", reason="mypy comes with the dev extra")
    result = _run("mypy")
    assert result.returncode == 0, result.stdout[-4000:]
