"""The dependency rule, enforced: import-linter's contracts from pyproject.toml must hold.

``core`` imports no SDK, queue, driver or adapter of ours; ``commands`` imports only the core;
``adapters`` import neither ``bot``, ``commands`` nor ``jobs``; nothing imports ``jobs``, whose own
imports are ``bot``'s bootstrap and the core; only ``bot.demo`` imports the ``pvesim`` simulator,
which imports nothing of ours. The contracts run through ``lint-imports`` from this virtualenv, and
a deliberately broken package tree checks that each contract does fail when its rule is broken.
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
ROOT_PACKAGES = ("core", "commands", "jobs", "bot", "adapters", "pvesim")
SDKS = {"slack_bolt", "slack_sdk", "botbuilder", "rq", "redis", "proxmoxer", "paramiko", "aiohttp", "sqlalchemy"}


def _config() -> dict[str, object]:
    config: dict[str, object] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]
    return config


def _contracts() -> list[dict[str, object]]:
    return list(_config()["contracts"])  # type: ignore[call-overload]


def _forbidden_from(package: str) -> set[str]:
    """Everything some contract forbids ``package`` to import."""
    found: set[str] = set()
    for contract in _contracts():
        if package in contract["source_modules"]:  # type: ignore[operator]
            found |= set(contract["forbidden_modules"])  # type: ignore[call-overload]
    return found


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
    assert tuple(_config()["root_packages"]) == ROOT_PACKAGES  # type: ignore[call-overload]
    ours = set(ROOT_PACKAGES)
    assert SDKS | ours - {"core"} <= _forbidden_from("core")
    assert SDKS | ours - {"commands", "core"} <= _forbidden_from("commands")
    assert {"bot", "commands", "jobs", "pvesim"} <= _forbidden_from("adapters")
    assert {"jobs", "pvesim"} <= _forbidden_from("bot")
    assert SDKS - {"rq", "redis"} | {"adapters", "commands", "pvesim", "bot"} <= _forbidden_from("jobs")
    assert ours - {"pvesim"} | {"proxmoxer"} <= _forbidden_from("pvesim")
    # the exceptions are few and named: the composition root installs what jobs run with, and the demo
    # builds a simulator
    assert sorted(tuple(c["ignore_imports"]) for c in _contracts() if "ignore_imports" in c) == [
        ("bot.bootstrap -> jobs.run",), ("bot.demo -> pvesim",)]
    assert [c["source_modules"] for c in _contracts() if c.get("allow_indirect_imports")] == [["jobs"]]


def test_the_code_keeps_every_contract() -> None:
    result = _lint(ROOT, config=PYPROJECT, pythonpath=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_contracts())} kept, 0 broken" in result.stdout


def _stand_in_tree(tree: Path) -> None:
    """Our packages in miniature, keeping every contract: what each test then breaks is the only fault."""
    for package in ROOT_PACKAGES:
        (tree / package).mkdir(parents=True)
        (tree / package / "__init__.py").write_text('"""stand-in"""\n')
    (tree / "adapters" / "sql").mkdir()
    (tree / "adapters" / "sql" / "__init__.py").write_text("")
    (tree / "adapters" / "sql" / "repositories.py").write_text("import sqlalchemy\n")
    (tree / "bot" / "bootstrap.py").write_text(
        "import adapters.sql.repositories\nimport commands.ok\nimport core\nimport jobs.run\n")
    (tree / "bot" / "demo.py").write_text("import pvesim\nimport bot.bootstrap\n")
    (tree / "bot" / "cli.py").write_text("from bot import demo\n")  # reaches pvesim only through the demo
    (tree / "commands" / "ok.py").write_text("import core\n")
    (tree / "jobs" / "run.py").write_text("import core\n")
    (tree / "pvesim" / "server.py").write_text("import aiohttp\n")


def test_the_stand_in_tree_keeps_every_contract(tmp_path: Path) -> None:
    # without this, a broken-tree test below could pass on a fault of the stand-in itself
    _stand_in_tree(tmp_path / "src")
    config = tmp_path / "pyproject.toml"
    config.write_text(PYPROJECT.read_text(encoding="utf-8"))
    result = _lint(tmp_path, config=config, pythonpath=tmp_path / "src")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("core/leak.py", "import rq\n", "core is independent"),
        ("core/leak.py", "from adapters.sql import repositories\n", "core is independent"),
        ("core/leak.py", "import slack_bolt\n", "core is independent"),
        ("commands/leak.py", "import bot.bootstrap\n", "commands use only the core"),
        ("adapters/leak.py", "from bot import bootstrap\n", "adapters use only the core"),
        ("adapters/leak.py", "import commands.ok\n", "adapters use only the core"),
        ("bot/leak.py", "import jobs.run\n", "nothing imports jobs but the composition root"),
        ("jobs/leak.py", "import bot.bootstrap\n", "jobs use only the core"),
        ("jobs/leak.py", "import adapters.sql.repositories\n", "jobs use no SDK, driver or adapter"),
        ("jobs/leak.py", "import commands.ok\n", "jobs use no SDK, driver or adapter"),
        ("jobs/leak.py", "import slack_sdk\n", "jobs use no SDK, driver or adapter"),
        ("bot/leak.py", "import pvesim.server\n", "only the demo imports the simulator"),
        ("adapters/leak.py", "import pvesim\n", "only the demo imports the simulator"),
        ("core/leak.py", "import pvesim\n", "only the demo imports the simulator"),
        ("pvesim/leak.py", "import core\n", "pvesim is independent of pvebot"),
        ("pvesim/leak.py", "import adapters.sql.repositories\n", "pvesim is independent of pvebot"),
        ("pvesim/leak.py", "import proxmoxer\n", "pvesim is independent of pvebot"),
    ],
)
def test_a_forbidden_import_breaks_the_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    # the same contracts, over a small tree with one forbidden import: the linter must say no
    tree = tmp_path / "src"
    _stand_in_tree(tree)
    (tree / module).write_text(line)
    config = tmp_path / "pyproject.toml"
    config.write_text(PYPROJECT.read_text(encoding="utf-8"))
    result = _lint(tmp_path, config=config, pythonpath=tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 broken" in result.stdout
    assert f"{broken}" in result.stdout.split("BROKEN")[0]
