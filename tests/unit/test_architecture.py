"""The dependency rule, enforced: import-linter's contracts from pyproject.toml must hold.

``core`` imports no SDK, queue, driver or adapter of ours; ``commands`` imports only the
core. The contracts run through ``lint-imports`` from this virtualenv, and a deliberately
broken package tree checks that the same contracts do fail when the rule is broken.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
ROOT_PACKAGES = ("core", "commands", "jobs", "bot", "adapters")


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    return list(config["contracts"])


def _lint(cwd: Path, *, config: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(config), "--no-cache"],
        cwd=cwd,
        env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contracts_forbid_what_the_house_style_forbids() -> None:
    by_source = {tuple(c["source_modules"]): set(c["forbidden_modules"]) for c in _contracts()}  # type: ignore[arg-type]
    sdks = {"slack_bolt", "slack_sdk", "botbuilder", "rq", "redis", "proxmoxer", "paramiko", "aiohttp", "sqlalchemy"}
    assert sdks | {"adapters", "bot", "commands", "jobs"} <= by_source[("core",)]
    assert sdks | {"adapters", "bot", "jobs"} <= by_source[("commands",)]


def test_the_code_keeps_every_contract() -> None:
    result = _lint(ROOT, config=PYPROJECT, pythonpath=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_contracts())} kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/leak.py", "import rq\n", "core is independent"),
        ("core/leak.py", "from adapters.sql import repositories\n", "core is independent"),
        ("core/leak.py", "import slack_bolt\n", "core is independent"),
        ("commands/leak.py", "import bot.bootstrap\n", "commands use only the core"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    # the same contracts, over a small tree with one forbidden import: the linter must say no
    tree = tmp_path / "src"
    for package in ROOT_PACKAGES:
        (tree / package).mkdir(parents=True)
        (tree / package / "__init__.py").write_text('"""stand-in"""\n')
    (tree / "adapters" / "sql").mkdir()
    (tree / "adapters" / "sql" / "__init__.py").write_text("")
    (tree / "adapters" / "sql" / "repositories.py").write_text("import sqlalchemy\n")
    (tree / "bot" / "bootstrap.py").write_text("import core\n")
    (tree / "commands" / "ok.py").write_text("import core\n")
    (tree / module).write_text(line)
    config = tmp_path / "pyproject.toml"
    config.write_text(PYPROJECT.read_text(encoding="utf-8"))
    result = _lint(tmp_path, config=config, pythonpath=tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 broken" in result.stdout
    assert f"{broken}" in result.stdout.split("BROKEN")[0]
