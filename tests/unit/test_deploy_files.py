"""The deployment files in ``deploy/`` name only real settings, and systemd accepts the units."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bot.config import DOCUMENTED

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
# pvebot's own namespaces; the images' variables (MARIADB_*) and the token secrets the provisioning
# file names (PVE_LAB_TOKEN, …) are not pvebot settings
SETTING = re.compile(r"\b((?:PVEBOT|SLACK|MICROSOFT)_[A-Z0-9_]+)\b")
DOCUMENTED_NAMES = {name for name, _, _ in DOCUMENTED}


@pytest.mark.parametrize("path", ["compose.yaml", "Dockerfile", "pvebot.env.example", *(
    f"systemd/{u.name}" for u in UNITS)])
def test_the_deployment_files_name_only_documented_settings(path: str) -> None:
    named = set(SETTING.findall((DEPLOY / path).read_text(encoding="utf-8")))
    assert named, path
    assert named <= DOCUMENTED_NAMES, f"{path} names {sorted(named - DOCUMENTED_NAMES)}"


def test_compose_runs_the_database_redis_a_migration_serve_and_two_workers() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert set(services) == {"mariadb", "redis", "migrate", "serve", "worker-1", "worker-2"}
    assert services["migrate"]["command"] == ["db", "upgrade"] and services["migrate"]["restart"] == "no"
    for name in ("serve", "worker-1", "worker-2"):
        service = services[name]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["healthcheck"]["test"], name
        assert service["env_file"] == "pvebot.env"
    assert "/readyz" in " ".join(services["serve"]["healthcheck"]["test"])
    assert {"mariadb", "redis", "data"} <= set(compose["volumes"])
    for name in ("mariadb", "redis"):
        assert services[name]["healthcheck"]["test"] and services[name]["volumes"]


def test_the_image_is_slim_non_root_with_pvebot_as_its_entry_point() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.\d+-slim\b", dockerfile, re.M)
    assert re.search(r"^USER pvebot$", dockerfile, re.M)
    assert 'ENTRYPOINT ["pvebot"]' in dockerfile


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_the_units_are_hardened_and_read_an_environment_file(unit: Path) -> None:
    text = unit.read_text(encoding="utf-8")
    for line in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes",
                 "EnvironmentFile=/etc/pvebot/pvebot.env", "User=pvebot"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), f"{unit.name}: {line}"


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        # the one check that needs systemd's own parser; everything above runs everywhere
        pytest.skip("systemd-analyze is not installed on this machine")
    pvebot = Path(sys.executable).with_name("pvebot")
    env_file = tmp_path / "pvebot.env"
    env_file.write_text((DEPLOY / "pvebot.env.example").read_text(encoding="utf-8"), encoding="utf-8")
    copies = []
    for unit in UNITS:
        # verify insists that ExecStart's program and the EnvironmentFile exist: point them at real ones
        text = unit.read_text(encoding="utf-8").replace("/opt/pvebot/bin/pvebot", str(pvebot))
        text = text.replace("/etc/pvebot/pvebot.env", str(env_file))
        name = unit.name.replace("@.service", "@1.service")  # a template is verified as an instance
        (tmp_path / unit.name).write_text(text, encoding="utf-8")
        (tmp_path / name).write_text(text, encoding="utf-8")
        copies.append(str(tmp_path / name))
    result = subprocess.run([tool, "verify", *copies], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # unknown or invalid keys are only warnings (exit 0): refuse them too
    assert not [line for line in output.splitlines() if str(tmp_path) in line], output
