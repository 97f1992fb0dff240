"""A notification sender killed with SIGKILL in the middle of a delivery, then started again.

The sender is a real ``pvebot serve`` process (its maintenance thread drains the outbox) posting to
the fake Slack Web API, which can hold a ``chat.postMessage`` open: before Slack has taken the
message, or after (Slack shows it, only its answer is late). The process is killed while the call
is held, and a new one is started.

- Killed before Slack took it: the new process sends it once the dead one's claim ends
  (``PVEBOT_NOTIFY_LEASE_SECONDS``), exactly once; what waited meanwhile is sent once too.
- Killed after Slack took it but before the row was marked sent: this is the one window left. Slack's
  ``chat.postMessage`` takes no idempotency key, so the new process cannot know the message arrived
  and sends it again: it shows twice, never more, and never not at all. The window is the time
  between Slack's answer being written and one UPDATE committing (the row is claimed before the post
  and settled right after it); the test kills inside it on purpose to show what happens there.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.sql import tables as t
from bot.bootstrap import App
from core.model import OutboxState, Topic
from core.services import notifications
from core.services.notifications import Event, Item
from tests.slack_support import FakeSlack, all_text, slack_env
from tests.support import make_storage, principal, provision, test_app

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
CHANNEL = "C0ACMEOPS"
PATIENCE = 60.0  # bounds a wait for something that should happen; never a measured time


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + PATIENCE
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}")
        time.sleep(0.05)


class Senders:
    """Starts and SIGKILLs ``pvebot serve`` processes over one database."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve"], cwd=ROOT, stdout=out,
                                            stderr=subprocess.STDOUT,
                                            env={**os.environ, **self.env, "PYTHONPATH": str(ROOT)})

    def kill(self) -> None:
        assert self.process is not None and self.process.poll() is None, "the sender is not running"
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[App, FakeSlack, Senders]]:
    with FakeSlack() as fake:
        storage = make_storage(f"sqlite:///{tmp_path / 'pvebot.db'}")
        provision(storage)
        app = test_app(storage)
        notifications.subscribe(app.deps, principal(storage, "alice@acme.example"), topic=Topic.BACKUPS,
                                channel=f"slack:{CHANNEL}")
        env = {**dict(storage.settings.env), **slack_env(fake), "PVEBOT_HTTP_PORT": str(_free_port()),
               "PVEBOT_NOTIFY_LEASE_SECONDS": "2", "PVEBOT_EVENTS_POLL_SECONDS": "3600",
               "PVEBOT_LOG_LEVEL": "WARNING"}
        senders = Senders(env, tmp_path / "serve.log")
        try:
            yield app, fake, senders
        finally:
            senders.stop()
            app.close()
            storage.engine.dispose()


def _publish(app: App, name: str) -> None:
    acme = principal(app.storage, "alice@acme.example").company_id
    notifications.publish(app.deps, Event(topic=Topic.BACKUPS, key=f"vzdump:lab:pve1:{name}", title=f"run {name}",
                                          items=(Item("lab", 100, "web-01", acme, False, "ok", "1 GiB"),)))


def _shown(fake: FakeSlack, name: str) -> int:
    """How many messages in the channel carry run ``name`` (alone, or as a line of a digest)."""
    with fake._lock:
        messages = [m for (c, _), m in fake.messages.items() if c == CHANNEL]
    return sum(f"run {name}:" in all_text(m) + str(m.get("text", "")) for m in messages)


def _states(app: App) -> dict[str, OutboxState]:
    """Each run's outbox row, by the run's name."""
    c = t.notify_outbox.c
    with app.storage.engine.connect() as conn:
        return {r.event_key.rsplit(":", 1)[1]: OutboxState(r.state)
                for r in conn.execute(sa.select(c.event_key, c.state))}


def test_a_sender_killed_mid_delivery_leaves_nothing_lost_and_one_window_documented(
        world: tuple[App, FakeSlack, Senders]) -> None:
    app, fake, senders = world

    # 1. killed while the post is held before Slack took it
    held = fake.hold("chat.postMessage", accepted=False)
    _publish(app, "a")
    senders.start()
    _wait("the post of run a to be in flight", lambda: fake.held("chat.postMessage") == 1)
    senders.kill()
    fake.release(held)
    _wait("Slack to drop the dead caller's post", lambda: fake.held("chat.postMessage") == 0)
    assert _shown(fake, "a") == 0 and _states(app)["a"] is OutboxState.PENDING
    _publish(app, "c")  # written while no sender runs
    senders.start()
    _wait("runs a and c sent", lambda: _states(app).get("a") is OutboxState.SENT
          and _states(app).get("c") is OutboxState.SENT)
    assert _shown(fake, "a") == 1 and _shown(fake, "c") == 1

    # 2. killed after Slack took the message, before the row was marked sent: the documented window
    held = fake.hold("chat.postMessage", accepted=True)
    _publish(app, "b")
    _wait("the post of run b to be in flight", lambda: fake.held("chat.postMessage") == 1)
    assert _shown(fake, "b") == 1  # Slack shows it; only the answer is late
    senders.kill()
    fake.release(held)
    assert _states(app)["b"] is OutboxState.PENDING  # claimed, never settled
    senders.start()
    _wait("run b settled by the new process", lambda: _states(app).get("b") is OutboxState.SENT)
    assert _shown(fake, "b") == 2  # sent again: shown twice, not lost, and not more than that
    # and nothing else was sent again by the restarts
    assert _shown(fake, "a") == 1 and _shown(fake, "c") == 1
    assert set(_states(app).values()) == {OutboxState.SENT}
