"""The provisioning file's ``backup`` section: checked, kept as each company's backup policy, exported back."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.yamlfile import LocatedDocument
from core.errors import ConfigurationError
from core.services import provisioning

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "example-provisioning.yaml"
ENV = {"PVE_LAB_TOKEN": "lab-secret", "PVE_EDGE_TOKEN": "edge-secret"}


def _validate(text: str) -> provisioning.Spec:
    doc = LocatedDocument(text, source="p.yaml")
    return provisioning.validate(doc.data, locate=doc.locate, env=ENV)


def test_the_example_gives_acme_its_backup_policy() -> None:
    acme = _validate(EXAMPLE.read_text(encoding="utf-8")).companies[0]
    assert acme.backup == {"storages": ["backup-nfs"], "max_schedules": 5, "max_age_hours": 26,
                           "default_retention": {"keep-daily": 7, "keep-weekly": 4}}


def test_a_bad_backup_section_names_every_problem() -> None:
    text = """\
companies:
  - slug: acme
    name: Acme
    backup:
      storages: [9bad]
      max_age_hours: 0
      default_retention: {keep-daily: -1, keep-forever: 1}
      colour: blue
"""
    with pytest.raises(ConfigurationError) as caught:
        _validate(text)
    found = caught.value.user_message.splitlines()
    assert any("companies[0].backup.colour: unknown key" in line for line in found), found
    assert any("companies[0].backup.storages[0]" in line for line in found), found
    assert any("companies[0].backup.max_age_hours" in line for line in found), found
    assert any("companies[0].backup.default_retention" in line and "keep-forever" in line for line in found), found
    assert any("default_retention.keep-daily" in line for line in found), found
