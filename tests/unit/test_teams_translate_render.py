"""Teams translation and rendering, pure: activities in, Adaptive Cards out (schema-checked)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from adapters.teams import render
from adapters.teams.notifier import activities_url
from adapters.teams.package import build_package
from adapters.teams.translate import MalformedActivity, clean_text, to_incoming
from core.chat import Action, ActionStyle, Field, Reply, Section, Severity, Table
from tests.teams_support import validate_card

SERVICE = "https://smba.trafficmanager.net/amer/"


def activity(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "type": "message", "id": "1700000000001", "serviceUrl": SERVICE, "channelId": "msteams",
        "from": {"id": "29:x", "aadObjectId": "aad-bob"}, "recipient": {"id": "28:bot", "name": "pvebot"},
        "conversation": {"id": "19:abc@thread.tacv2", "conversationType": "channel", "tenantId": "tenant-acme"},
    }
    return {**base, **kw}


@pytest.mark.parametrize("text, expected", [
    ("pve vm list", "vm list"),
    ("<at>pvebot</at> vm list", "vm list"),
    ("<at>pvebot</at>&nbsp;pve  vm   status web-01", "vm status web-01"),
    ("<p><at>Pvebot</at> help</p>", "help"),
    ("pvetest", "pvetest"),
    ("PVE", ""),
])
def test_clean_text(text: str, expected: str) -> None:
    assert clean_text(text) == expected


def test_message_becomes_a_request() -> None:
    request = to_incoming(activity(text="<at>pvebot</at> vm list", replyToId="1699"))
    assert request.request is not None
    r = request.request
    assert r.text == "vm list" and r.request_id.startswith("teams-")
    assert (r.identity.platform, r.identity.workspace_id, r.identity.user_id) == ("teams", "tenant-acme", "aad-bob")
    assert r.conversation.channel == "19:abc@thread.tacv2" and r.conversation.thread == "1699"
    assert r.conversation.get("service_url") == SERVICE and r.conversation.get("channel_id") == "msteams"
    assert r.conversation.get("bot_id") == "28:bot" and r.conversation.get("tenant_id") == "tenant-acme"


def test_request_key_is_the_activity_in_its_conversation_and_tenant() -> None:
    def key(**kw: object) -> str:
        incoming = to_incoming(activity(text="vm list", **kw))
        assert incoming.request is not None
        return incoming.request.request_id

    again = key()
    assert again == key() and len(again) <= 191
    other_chat = key(conversation={"id": "a:1on1-alice", "conversationType": "personal", "tenantId": "tenant-acme"})
    other_tenant = key(conversation={"id": "19:abc@thread.tacv2", "conversationType": "channel",
                                     "tenantId": "tenant-globex"})
    assert len({again, other_chat, other_tenant}) == 3
    # without an id there is no re-delivery to recognise
    assert key(id=None) != key(id=None)


def test_button_presses_become_the_presser_s_command() -> None:
    submit = to_incoming(activity(value={"command": "approve apr-x"}))
    assert submit.request is not None and submit.request.text == "approve apr-x" and not submit.invoke
    execute = to_incoming(activity(type="invoke", name="adaptiveCard/action",
                                   value={"action": {"type": "Action.Execute", "verb": "approve",
                                                     "data": {"command": "approve apr-x"}}}))
    assert execute.invoke and execute.request is not None and execute.request.text == "approve apr-x"


@pytest.mark.parametrize("value", [None, {}, {"action": "x"}, {"action": {"verb": "approve", "data": {}}},
                                   {"action": {"verb": "refresh", "data": {}}}])
def test_malformed_invokes_are_refused(value: object) -> None:
    with pytest.raises(MalformedActivity):
        to_incoming(activity(type="invoke", name="adaptiveCard/action", value=value))


def test_activities_url_keeps_the_service_path() -> None:
    assert activities_url(SERVICE, "19:a@thread.tacv2;messageid=1", "17") == (
        "https://smba.trafficmanager.net/amer/v3/conversations/19%3Aa%40thread.tacv2%3Bmessageid%3D1/activities/17")


REPLY = Reply(title="apr-1: approval needed", text="Waiting", severity=Severity.WARNING,
              fields=(Field("Action", "vm.delete"),), table=Table(("a", "b"), (("1", "2"),)),
              actions=(Action("Approve", "approve apr-1", ActionStyle.PRIMARY, (2,)),
                       Action("Deny", "deny apr-1", ActionStyle.DANGER, (2,))), footer="f")


def test_cards_validate_and_hide_restricted_buttons() -> None:
    common = render.card(REPLY, audience=["aad-alice"])
    mine = render.view_card(common["refresh"]["action"]["data"]["pvebotView"], user_id="aad-alice")
    other = render.view_card(common["refresh"]["action"]["data"]["pvebotView"], user_id="aad-bob")
    for card in (common, mine, other, render.card(REPLY), render.card(Reply()), render.card(Reply.error("x"))):
        validate_card(card)
    assert "actions" not in common and "actions" not in other
    assert [a["verb"] for a in mine["actions"]] == ["approve", "deny"]
    assert mine["actions"][1]["style"] == "destructive" and mine["actions"][1]["fallback"]["type"] == "Action.Submit"
    assert common["refresh"]["userIds"] == ["aad-alice"]
    assert common["fallbackText"] == REPLY.plain_text()


def test_schema_check_catches_a_bad_card() -> None:
    with pytest.raises(AssertionError):
        validate_card({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "colour": "x"}]})


def _elements(node: object) -> list[dict[str, object]]:
    """Every element of a card, depth first."""
    found: list[dict[str, object]] = []
    if isinstance(node, dict):
        if "type" in node:
            found.append(node)
        for value in node.values():
            found.extend(_elements(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_elements(value))
    return found


def test_every_table_is_an_adaptive_table_whose_rows_keep_their_cells_together() -> None:
    for width in (2, 7):
        rows = tuple(tuple(f"r{r}c{c}" + (" long words that wrap" if c == 1 else "") for c in range(width))
                     for r in range(3))
        card = render.card(Reply(table=Table(tuple(f"col{c}" for c in range(width)), rows)))
        validate_card(card)
        [table] = [e for e in _elements(card) if e["type"] == "Table"]
        assert table["firstRowAsHeader"] is True
        assert len(table["columns"]) == width and len(table["rows"]) == 4
        # one row element per table row: a wrapped cell makes its row taller, never shifts the next ones
        for row, expected in zip(table["rows"], [tuple(f"col{c}" for c in range(width)), *rows], strict=True):
            assert [cell["items"][0]["text"] for cell in row["cells"]] == list(expected)
        weights = [c["width"] for c in table["columns"]]
        assert weights[1] > weights[0]  # the long column gets more room
        assert "Monospace" not in json.dumps(card)


def test_a_column_of_short_words_gets_room_for_its_longest_word() -> None:
    rows = (("start db-01 (lab/102) and a long description of it", "succeeded", "job-jgv4rhmvbk"),)
    [table] = [e for e in _elements(render.card(Reply(table=Table(("what", "state", "job"), rows))))
               if e["type"] == "Table"]
    what, state, job = (c["width"] for c in table["columns"])
    assert state >= len("succeeded") and job >= len("job-jgv4rhmvbk") and what <= 30


def test_sections_are_bold_labels_with_subtle_values() -> None:
    reply = Reply(title="help", sections=(Section("vm", (Field("vm start <vm>", "Start a VM."),)),))
    card = render.card(reply)
    validate_card(card)
    [rich] = [e for e in _elements(card) if e["type"] == "RichTextBlock"]
    assert rich["inlines"][0] == {"type": "TextRun", "text": "vm start <vm>", "weight": "Bolder"}
    assert rich["inlines"][1]["isSubtle"] is True and "Start a VM." in rich["inlines"][1]["text"]
    assert reply.plain_text().splitlines() == ["help", "vm", "  vm start <vm>  Start a VM."]


@pytest.mark.parametrize("severity", list(Severity))
def test_no_text_is_coloured_and_severity_is_an_icon_and_a_container(severity: Severity) -> None:
    card = render.card(Reply(title="Title", text="body", severity=severity))
    validate_card(card)
    assert "color" not in json.dumps(card)
    titles = [e for e in _elements(card) if e.get("text", "").endswith("Title")]
    assert titles[0]["size"] == "Large" and titles[0]["weight"] == "Bolder"
    containers = [e for e in _elements(card) if e["type"] == "Container" and "style" in e]
    expected = {Severity.INFO: None, Severity.SUCCESS: "good", Severity.WARNING: "warning",
                Severity.ERROR: "attention"}[severity]
    assert [c["style"] for c in containers] == ([expected] if expected else [])
    assert (titles[0]["text"] != "Title") == (severity is not Severity.INFO)  # an icon opens it


def test_package(tmp_path: Path) -> None:
    app_id = "00000000-aaaa-4bbb-8ccc-000000000001"
    path = build_package(tmp_path / "p.zip", app_id=app_id, version="1.0.1")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(zf.read("manifest.json"))
        assert zf.read("color.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert manifest["id"] == app_id and manifest["bots"][0]["botId"] == app_id and manifest["version"] == "1.0.1"
    with pytest.raises(ValueError):
        build_package(tmp_path / "q.zip", app_id="not-a-guid")
