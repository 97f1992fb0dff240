"""Socket Mode: with SLACK_APP_TOKEN, ``pvebot serve`` connects out to Slack instead of taking HTTP posts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.queue import EmbeddedQueue
from bot.bootstrap import build_app, build_server
from bot.config import Settings
from tests import slack_support
from tests.fakes import FakeClock
from tests.slack_support import FakeSlack, all_text, lab_hypervisors, posted, serving, slack_env
from tests.support import make_storage, provision

# the shared fixtures, by name
fake_slack = slack_support.fake_slack


@pytest.fixture
async def socket_bot(tmp_path: Path, fake_slack: FakeSlack) -> AsyncIterator[str]:
    storage = make_storage(f"sqlite:///{tmp_path / 'pvebot.db'}", clock=FakeClock())
    provision(storage)
    settings = Settings.from_mapping({**dict(storage.settings.env), **slack_env(fake_slack, socket_mode=True)})
    app = build_app(settings, storage=storage, hypervisors=lab_hypervisors(), queue=EmbeddedQueue(workers=1),
                    progress_interval=0.0, poll_interval=0.01)
    try:
        async with serving(build_server(app)) as url:
            yield url
    finally:
        app.close()
        storage.engine.dispose()


async def test_slash_command_over_socket_mode(socket_bot: str, fake_slack: FakeSlack) -> None:
    await fake_slack.wait_for(lambda f: f.connected())
    # no HTTP endpoint without a signing secret: Socket Mode only
    assert [c.method for c in fake_slack.of("apps.connections.open")] == ["apps.connections.open"]
    payload = {"team_id": "T0ACME", "user_id": "U0BOB", "channel_id": "C0OPS", "command": "/pve",
               "text": "vm list", "trigger_id": "1.2.3", "response_url": fake_slack.response_url()}
    envelope = await asyncio.to_thread(fake_slack.send_envelope, "slash_commands", payload)
    await fake_slack.wait_for(lambda f: f.acked(envelope))
    reply = (await fake_slack.wait_for(lambda f: posted(f)))[0]
    assert "VMs (2, 1 running)" in all_text(reply) and fake_slack.violations == []


async def test_socket_mode_alone_serves_no_http_endpoint(socket_bot: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(socket_bot + "/slack/events", data=b"x") as r:
        assert r.status in (404, 405)
