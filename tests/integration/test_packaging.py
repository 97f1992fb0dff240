"""Installing pvebot as the README says (an editable install, as `scripts/dev` does) prints no setuptools warning.

A newcomer's first command builds the project with whatever setuptools the index has today; a
warning there (a deprecated `project.license` table, a notice about how the editable install
finds our packages) reads as something wrong with the project.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_editable_install_prints_no_setuptools_warning(tmp_path: Path) -> None:
    venv.create(tmp_path / "venv", with_pip=False)
    python = tmp_path / "venv" / ("Scripts" if sys.platform == "win32" else "bin") / "python"
    # the pip of the suite's own environment (which scripts/dev keeps up to date: older pips hid what
    # the build backend warns of), installing into the new one
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--disable-pip-version-check", "-e", str(ROOT)], capture_output=True, text=True,
                          timeout=300)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    noise = [line for line in said.splitlines()
             if "Warning" in line or line.strip() == "!!" or "deprecat" in line.lower()]
    assert noise == [], said
