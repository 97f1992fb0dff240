"""The piped demo session printed in the README runs as printed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def demo_command() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- demo-session -->", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return block.strip()


def test_the_readme_demo_session_runs_as_printed(tmp_path: Path) -> None:
    command = demo_command()
    assert command.startswith("printf ") and "scripts/dev demo" in command
    env = {**os.environ, "PVEBOT_DATA_DIR": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=180, stdin=subprocess.DEVNULL)
    out = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in out + result.stderr
    assert "Role     user" in out
    assert "web-03" in out and "queued job-" in out
    assert "Delete db-02?" in out and "Destroys 1 disk" in out and "Disks deleted" in out
    assert "✅ web-03 is running (done in" in out  # the started job finished before the demo exited
    assert "apr-" in out.split("approval list")[-1]  # erin sees the pending request
