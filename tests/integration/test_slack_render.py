"""Block Kit rendering and payload translation: pure functions, checked against slack_sdk's models and limits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.slack import translate
from adapters.slack.outbound import SlackPoster
from adapters.slack.render import ask_modal, render
from core.chat import Action, ActionStyle, ConversationRef, Field, Reply, Severity, Table
from tests.slack_support import BOT_TOKEN, FakeSlack, block_problems, view_problems

REPLIES = {
    "plain": Reply(text="hello"),
    "empty": Reply(),
    "error": Reply.error("❌ <!channel> & <@U1> are not commands"),
    "card": Reply(title="apr-1: approval needed", text="waiting", severity=Severity.WARNING,
                  fields=tuple(Field(f"F{i}", "v" * 2500) for i in range(23)),
                  actions=(Action("Approve", "approve apr-1", ActionStyle.PRIMARY),
                           Action("Deny", "deny apr-1", ActionStyle.DANGER)), footer="expires soon"),
    "long title": Reply(title="t" * 400, text="x" * 9000),
    "many buttons": Reply(text="pick", actions=tuple(Action("b" * 100, f"vm start {i}") for i in range(60))),
    "huge table": Reply(title="VMs", table=Table(("vmid", "name"), tuple((str(i), "n" * 80) for i in range(5000)))),
    "wide table": Reply(table=Table(("a",), (("w" * 7000,),))),
}


@pytest.mark.parametrize("name", sorted(REPLIES))
def test_every_reply_renders_to_valid_block_kit_within_limits(name: str) -> None:
    rendered = render(REPLIES[name], caption="<@U0BOB> `/pve vm list`")
    assert block_problems(rendered.blocks) == []
    assert 0 < len(rendered.text) <= 3000


def test_tables_are_code_blocks_and_cut_with_a_notice() -> None:
    small = render(Reply(table=Table(("vmid", "name"), (("101", "web-01"),))))
    assert small.blocks[0]["text"]["text"].startswith("```") and not small.truncated
    huge = render(REPLIES["huge table"])
    assert huge.truncated and "more row(s) not shown" in str(huge.blocks[-1])


def test_user_text_cannot_mention_or_link() -> None:
    rendered = render(REPLIES["error"])
    assert "<!channel>" not in str(rendered.blocks) and "&lt;!channel&gt;" in str(rendered.blocks)


def test_buttons_for_some_people_only_are_not_rendered_on_slack_where_everyone_would_see_them() -> None:
    reply = Reply(title="Delete db-01?", text="Pending", highlight="Destroys 2 disks, 132 GiB · VM is running",
                  details=(Field("Disks deleted", "scsi0: local-lvm:vm-102-disk-0 (32G)"),),
                  actions=(Action("Delete db-01", "approve apr-1", ActionStyle.DANGER, (2, 3)),
                           Action("Reject", "deny apr-1", ActionStyle.DEFAULT, (2, 3), ask="Reason")))
    restricted = render(reply)
    assert not [b for b in restricted.blocks if b["type"] == "actions"]
    assert "Destroys 2 disks" in str(restricted.blocks) and "scsi0" in str(restricted.blocks)
    assert block_problems(restricted.blocks) == []
    open_to_all = render(replace(reply, actions=tuple(replace(a, only_for=()) for a in reply.actions)))
    buttons = [e for b in open_to_all.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["text"]["text"], b.get("style")) for b in buttons] == [("Delete db-01", "danger"), ("Reject", None)]
    assert block_problems(open_to_all.blocks) == []


def test_a_button_that_asks_carries_its_prompt_to_a_modal_slack_accepts() -> None:
    asking = Action("Reject the deletion of every disk of db-01", "deny apr-1", ask="Reason for rejecting (optional)")
    too_long = Action("Reject", "deny " + "x" * 1980, ask="Reason for rejecting (optional)")
    rendered = render(Reply(text="Pending", actions=(asking, too_long)))
    # a value with the prompt beyond 2,000 characters would be cut: that button is left out
    [button] = [e for b in rendered.blocks if b["type"] == "actions" for e in b["elements"]]
    assert block_problems(rendered.blocks) == [] and button["action_id"].startswith(translate.ASK_PREFIX)
    press = translate.button_press({
        "team": {"id": "T1"}, "user": {"id": "U1"}, "trigger_id": "t1",
        "container": {"channel_id": "D1", "message_ts": "1.2"}, "message": {"ts": "1.2", "blocks": rendered.blocks},
        "actions": [{"action_id": button["action_id"], "value": button["value"], "text": button["text"],
                     "action_ts": "1.3"}]})
    assert press is not None and (press.request.text, press.ask, press.trigger_id) == (
        "deny apr-1", "Reason for rejecting (optional)", "t1")
    modal = ask_modal(label=press.label, ask=press.ask, metadata=translate.ask_metadata(press))
    assert view_problems(modal) == []
    assert modal["title"]["text"] == "Reject the deletion of …" and len(modal["submit"]["text"]) <= 24


def test_translations() -> None:
    command = translate.slash_command({"team_id": "T1", "user_id": "U1", "channel_id": "C1", "command": "/pve",
                                       "text": "vm delete a &amp; b —reason “no more”", "trigger_id": "t1",
                                       "response_url": "https://hooks/x"})
    assert command.request.text == 'vm delete a & b --reason "no more"'
    assert command.request.conversation == ConversationRef("slack", "C1", None, (("team", "T1"),))
    again = translate.slash_command({"team_id": "T1", "user_id": "U1", "channel_id": "C1", "trigger_id": "t1"})
    assert again.request.request_id == command.request.request_id and again.request.text == "help"
    mention = translate.app_mention({"event_id": "Ev1", "team_id": "T1", "event": {
        "type": "app_mention", "user": "U2", "text": "<@UBOT> vm list", "ts": "1.2", "channel": "C1"}},
        bot_user_id="UBOT")
    assert mention is not None and mention.request.text == "vm list"
    assert mention.request.conversation.thread == "1.2" and mention.request.request_id == "slack-evt-Ev1"
    assert translate.app_mention({"event": {"bot_id": "B1", "user": "U3", "text": "x", "channel": "C"}},
                                 bot_user_id="UBOT") is None


async def test_output_beyond_the_limits_is_also_sent_as_a_file() -> None:
    from slack_sdk.web.async_client import AsyncWebClient

    from adapters.slack.notifier import outbox_client
    from adapters.slack.pacing import SlackOutbox

    with FakeSlack() as fake:
        outbox = SlackOutbox(outbox_client(BOT_TOKEN, base_url=fake.api_url))
        poster = SlackPoster(AsyncWebClient(token=BOT_TOKEN, base_url=fake.api_url), outbox)
        incoming = translate.slash_command({"team_id": "T0ACME", "user_id": "U0BOB", "channel_id": "C0OPS",
                                            "text": "vm list", "trigger_id": "t"})
        message = await poster.deliver(incoming, REPLIES["huge table"])
        assert message is not None
        complete = fake.of("files.completeUploadExternal")
        assert complete and complete[0].args["thread_ts"] == message.message_id
        upload = fake.of("upload")[0].args["bytes"].decode()
        assert upload.count("\n") >= 5000 and fake.violations == []
        outbox.close()


def test_manifest_matches_what_the_adapter_serves_and_calls() -> None:
    from pathlib import Path

    import yaml

    import adapters.slack
    from adapters.slack.app import EVENTS_PATH

    manifest = yaml.safe_load((Path(adapters.slack.__file__).parent / "manifest.yml").read_text())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "commands", "chat:write", "chat:write.public", "app_mentions:read", "users:read", "users:read.email",
        "files:write"}
    settings, features = manifest["settings"], manifest["features"]
    urls = {features["slash_commands"][0]["url"], settings["event_subscriptions"]["request_url"],
            settings["interactivity"]["request_url"]}
    assert len(urls) == 1 and urls.pop().endswith(EVENTS_PATH)
    assert features["slash_commands"][0]["command"] == "/pve"
    assert settings["event_subscriptions"]["bot_events"] == ["app_mention"]


def test_details_beyond_a_context_block_s_ten_elements_are_said_to_be_cut() -> None:
    few = render(Reply(title="t", details=(Field("Disk", "scsi0"),)))
    many = render(Reply(title="t", details=tuple(Field(f"Disk {i}", "x" * 1500) for i in range(20))))
    assert not few.truncated
    assert many.truncated and not block_problems(many.blocks)
