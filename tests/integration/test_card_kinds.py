"""Every kind of card scripts/render-cards draws, from real command answers: each one valid for its platform."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from adapters.slack.render import render as slack_render
from adapters.teams import render as teams_render
from tests.slack_support import block_problems
from tests.teams_support import validate_card

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "card_samples.py"


def _samples_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("card_samples", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_card_kind_validates_on_teams_and_on_slack(tmp_path: Path) -> None:
    samples = _samples_module()
    samples.main(str(tmp_path))
    teams = sorted(tmp_path.glob("*.teams.json"))
    assert len(teams) >= 15
    for path in teams:
        validate_card(json.loads(path.read_text(encoding="utf-8")))
        slack = json.loads(path.with_name(path.name.replace(".teams.", ".slack.")).read_text(encoding="utf-8"))
        assert block_problems(slack["blocks"]) == [], path.name
        assert 0 < len(slack["text"]) <= 3000


def test_the_kinds_say_what_they_are_for(tmp_path: Path) -> None:
    found = _samples_module().samples(tmp_path)
    requester, _ = found["approval-requester"]
    approver, _ = found["approval-approver"]
    # the requester's card restricts its decision buttons; Slack therefore shows none, Teams none to her
    assert all(a.only_for for a in requester.actions)
    assert not [b for b in slack_render(requester).blocks if b["type"] == "actions"]
    assert "actions" not in teams_render.card(requester, audience=["aad-alice"])
    assert [b["type"] for b in slack_render(approver).blocks].count("actions") == 1
    # every decided copy: no buttons, the decision in the text
    for name, word in (("approval-decided", "Approved by"), ("approval-done", "Approved by"),
                       ("approval-rejected", "Rejected by"), ("approval-expired", "Expired")):
        reply, _ = found[name]
        assert reply.actions == () and reply.text.startswith(word), name
