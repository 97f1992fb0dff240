"""Every kind of card pvebot sends, as our real renderers make them: Teams Adaptive Card and Slack Block Kit JSON.

The replies come from real commands typed into the test world (fake Proxmox, SQLite, a fixed clock),
so what is rendered is what the bot answers. ``scripts/render-cards`` turns the Teams JSON into PNGs.

    .venv/bin/python scripts/card_samples.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if p and Path(p).resolve() != Path(__file__).resolve().parent]

from adapters.shell.outbox import OutboxReader  # noqa: E402
from adapters.slack.render import render as slack_render  # noqa: E402
from adapters.teams import render as teams_render  # noqa: E402
from core.chat import Reply  # noqa: E402
from core.ids import show_approval  # noqa: E402
from core.principal import Scope  # noqa: E402
from core.services import approval_cards, approvals  # noqa: E402
from tests.e2e.test_approvals import make_world  # noqa: E402
from tests.fakes import FakeClock  # noqa: E402
from tests.support import card_approval, make_storage  # noqa: E402

BOB, ALICE, ROOT_ADMIN = "bob@acme.example", "alice@acme.example", "root@host.example"
# AAD ids standing in for the approvers on Teams: the requester's card is rendered as she sees it
APPROVER_IDS = ["aad-alice", "aad-erin"]


def samples(tmp: Path) -> dict[str, tuple[Reply, bool]]:
    """name → (reply, rendered as an approver's own view)."""
    clock = FakeClock()
    world = make_world(make_storage(f"sqlite:///{tmp / 'cards.db'}", clock=clock), clock)
    chat, deps = world.chat, world.app.deps
    out: dict[str, tuple[Reply, bool]] = {}
    out["help"] = (chat.run("help", as_=ROOT_ADMIN), False)
    out["help-backup"] = (chat.run("help backup", as_=ROOT_ADMIN), False)
    out["whoami"] = (chat.run("whoami", as_=BOB), False)
    out["vm-list"] = (chat.run("vm list", as_=ROOT_ADMIN), False)
    out["vm-status"] = (chat.run("vm status web-01", as_=BOB), False)
    out["error"] = (chat.run("vm start no-such-vm", as_=BOB), False)

    started = chat.ask("vm start db-01", as_=BOB)
    out["job-queued"] = (started.reply, False)
    world.run_queue()
    progress = [e for e in OutboxReader(world.storage.engine, chat.conversation.channel).poll()
                if e.reply.progress_of]
    out["job-running"] = (next(e.reply for e in progress if "running" in e.reply.text), False)
    out["job-outcome"] = (progress[-1].reply, False)
    out["job-list"] = (chat.run("job list", as_=BOB), False)

    request = chat.run('vm delete db-01 --reason "replaced by db-02"', as_=BOB)
    approval = world.approval(request)
    out["approval-no-approver-reachable"] = (request, False)
    # as the requester sees it once the approvers got their copies (direct messages, a channel)
    reached = replace(approval, copies=[{"placeholder": True}])
    out["approval-requester"] = (approval_cards.card(deps, reached), False)
    out["approval-approver"] = (approval_cards.card(deps, approval, for_approvers=True), False)
    out["approval-requester-in-a-chat-with-approvers"] = (approval_cards.card(deps, reached), True)
    out["approval-list"] = (chat.run("approval list", as_=ALICE), False)
    out["approval-decided"] = (chat.run(f"approve {request_label(request)}", as_=ROOT_ADMIN), False)
    world.run_queue()
    with deps.uow_factory(Scope.everything()) as uow:
        done = uow.approvals.get(approval.id)
    assert done is not None
    out["approval-done"] = (approval_cards.card(deps, done), False)

    stop = chat.run("vm stop web-01 --reason hung", as_=BOB)
    out["approval-rejected"] = (chat.run(f"deny {request_label(stop)} not during business hours", as_=ALICE),
                                False)
    reset = chat.run("vm reset web-01", as_=BOB)
    clock.advance(minutes=45)
    approvals.expire_due(deps)
    expired = world.approval(reset)
    out["approval-expired"] = (approval_cards.card(deps, expired), False)
    return out


def request_label(card: Reply) -> str:
    found = card_approval(card)
    assert found, card
    return show_approval(found)


def main(out_dir: str) -> None:
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        found = samples(Path(tmp))
    for name, (reply, as_approver) in found.items():
        if as_approver:
            common = teams_render.card(reply, audience=APPROVER_IDS)
            card = teams_render.view_card(common["refresh"]["action"]["data"]["pvebotView"], user_id=APPROVER_IDS[0])
        else:
            card = teams_render.card(reply, audience=APPROVER_IDS)
        (target / f"{name}.teams.json").write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")
        slack = slack_render(reply)
        (target / f"{name}.slack.json").write_text(
            json.dumps({"text": slack.text, "blocks": slack.blocks}, indent=1, ensure_ascii=False) + "\n",
            encoding="utf-8")
    print(f"{len(found)} cards written to {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "docs" / "cards"))
