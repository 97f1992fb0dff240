"""One dispatch path, one composition root, read from the source: who starts jobs, who builds what.

Adapters post through ``bot.delivery`` (``Dispatcher.deliver``/``deliver_async``) and never
start a job themselves; ``bot/bootstrap.py`` is the one place that constructs the Teams and
Slack parts; ``build_app`` installs nothing process-wide for RQ jobs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INBOUND = ("adapters/slack/app.py", "adapters/teams/app.py", "adapters/shell/session.py")


def _calls(path: Path) -> set[str]:
    """Every ``a.b.c(...)`` called in a module, as the dotted text of what is called."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            found.add(ast.unparse(node.func))
    return found


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_no_adapter_starts_a_job_or_tracks_or_announces_a_card_itself() -> None:
    offenders = []
    for path in _modules("adapters"):
        for call in _calls(path):
            if call.endswith(("jobs.start", "reply_posted", "reply_posted_async", "card_posted",
                              "approval_cards.announce", "approvals.withdraw")):
                offenders.append(f"{path.relative_to(ROOT)}: {call}")
    assert offenders == []


@pytest.mark.parametrize("module", INBOUND)
def test_every_inbound_adapter_goes_through_the_one_delivery_path(module: str) -> None:
    calls = _calls(ROOT / module)
    assert {"self.dispatcher.deliver_async", "self.ports.dispatcher.deliver"} & calls, sorted(calls)


def test_the_dispatcher_has_no_second_way_to_start_work() -> None:
    source = (ROOT / "bot" / "dispatch.py").read_text(encoding="utf-8")
    assert "reply_posted" not in source and "jobs.start" not in source


def test_only_the_composition_root_builds_teams_and_slack_parts() -> None:
    built = {"TeamsNotifier", "TeamsDirectory", "IdentityAudience", "CloudAdapter", "build_authentication",
             "SlackNotifier", "SlackDirectory", "SlackOutbox", "build_bolt_app", "SimpleWorker", "EmbeddedQueue",
             "RqJobQueue"}
    where: dict[str, list[str]] = {}
    for path in _modules("adapters", "bot", "jobs"):
        for call in _calls(path):
            name = call.rsplit(".", 1)[-1]
            if name in built:
                where.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert {name: sorted(set(paths)) for name, paths in where.items()} == {name: ["bot/bootstrap.py"]
                                                                          for name in where}
    # and each exactly once there: one notifier, one directory, one CloudAdapter per process
    calls = [ast.unparse(n.func) for n in ast.walk(ast.parse((ROOT / "bot/bootstrap.py").read_text()))
             if isinstance(n, ast.Call)]
    for name in ("TeamsNotifier", "TeamsDirectory", "CloudAdapter", "IdentityAudience"):
        assert calls.count(name) == 1, name


def test_a_worker_with_nothing_installed_refuses_loudly(tmp_path: Path) -> None:
    from bot.bootstrap import build_app
    from jobs import run
    from tests.fakes import FakeHypervisors, FakeQueue
    from tests.support import make_storage

    run.uninstall()
    storage = make_storage(f"sqlite:///{tmp_path / 'pvebot.db'}")
    app = build_app(storage.settings, storage=storage, hypervisors=FakeHypervisors(), queue=FakeQueue())
    try:
        with pytest.raises(run.NotInstalled, match="no pvebot dependencies installed"):
            run.run_job("nothing")  # build_app installed nothing for this process
        run.install(app.deps)
        assert run.installed() is app.deps
        assert run.run_job("no-such-job") == "skipped"
    finally:
        run.uninstall()
        app.close()
        storage.engine.dispose()
