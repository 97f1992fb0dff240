"""The README's tables and example stay what the code says."""

from __future__ import annotations

from pathlib import Path

from bot.config import DOCUMENTED, Settings
from commands import build_registry
from core.rbac import matrix_markdown

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_the_run_and_test_commands() -> None:
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "scripts/dev demo" in first_block and "scripts/dev test" in first_block
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "exec bash scripts/dev test" in ci


def test_configuration_table_lists_every_setting() -> None:
    for name, default, meaning in DOCUMENTED:
        assert f"| `{name}` | {default} | {meaning} |" in README
    # every PVEBOT_/SLACK_/MICROSOFT_ variable Settings reads is documented
    source = (ROOT / "bot" / "config.py").read_text(encoding="utf-8")
    read = {part.split('"')[1] for part in source.split("get(")[1:] if part.startswith('"')}
    read |= {part.split('"')[1] for part in source.split("integer(")[1:] if part.startswith('"')}
    assert read - {"XDG_DATA_HOME"} <= {name for name, _, _ in DOCUMENTED}
    assert Settings.from_mapping({}).redis_url is None


def test_permission_matrix_is_the_code_matrix() -> None:
    assert matrix_markdown() in README


def test_example_provisioning_file_is_shown_verbatim() -> None:
    example = (ROOT / "docs" / "example-provisioning.yaml").read_text(encoding="utf-8").rstrip("\n")
    assert example in README


def test_command_reference_names_every_command() -> None:
    reference = README.split("| command | what it does |", 1)[1].split("\n\n", 1)[0].splitlines()
    for spec in build_registry():
        group, _, verb = spec.name.partition(" ")
        assert any(f"`{group}" in line and verb in line for line in reference), spec.name
