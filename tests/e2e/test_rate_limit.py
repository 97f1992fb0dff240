"""The rate limit comes before anything costly, and every serve process shares it (in Redis).

An unlinked sender used to cost one platform look-up per command (Slack users.info, Teams and Graph),
because the limit ran after identity resolution; and each process counted on its own. The Teams case
goes through real Bot Framework activities over HTTP on loopback (``tests/teams_support.py``).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from redis import Redis

from adapters.ratelimit import RedisRateLimiter
from bot.bootstrap import Storage
from bot.dispatch import Dispatcher
from commands import build_registry
from core.chat import CommandRequest, ConversationRef, IdentityKey
from tests.e2e.test_dispatch import shared_redis
from tests.fakes import FakeDirectory, FakeHypervisors, FakeQueue
from tests.support import provision, test_app
from tests.teams_support import card_text, message, running_bot

__all__ = ["shared_redis"]  # the fixture, used by name below

LIMITED = "too many commands at once; wait a moment and try again"


@pytest.mark.redis
def test_an_unlinked_sender_is_limited_before_any_lookup_and_the_limit_is_shared(
    storage: Storage, shared_redis: Redis
) -> None:
    provision(storage)
    app = test_app(storage, hypervisors=FakeHypervisors(), queue=FakeQueue())
    directory = FakeDirectory()  # knows nobody: every look-up is a wasted platform call
    prefix = f"pvebot:rl:test-{uuid.uuid4().hex[:8]}"
    # two serve processes: two dispatchers, one Redis
    processes = [Dispatcher(registry=build_registry(), deps=app.deps, directory=directory,
                            rate_limiter=RedisRateLimiter(shared_redis, limit=30, window=60, prefix=prefix))
                 for _ in range(2)]
    stranger = IdentityKey("slack", "T0ACME", "U0STRANGER")
    answers = []
    try:
        for i in range(45):
            request = CommandRequest(identity=stranger, text="vm list", request_id=uuid.uuid4().hex,
                                     conversation=ConversationRef(platform="slack", channel="C1"))
            answers.append(processes[i % 2].handle(request).reply.text)
    finally:
        for key in shared_redis.scan_iter(f"{prefix}:*"):
            shared_redis.delete(key)
        app.close()
    limited = [a for a in answers if a == LIMITED]
    assert len(limited) == 15, answers
    # the 15 refused cost nothing: at most one look-up per command that got past the limit
    assert len([c for c in directory.calls if c[0] == "email"]) <= 30


def test_without_redis_the_limit_lets_commands_through_rather_than_fail(storage: Storage) -> None:
    limiter = RedisRateLimiter(Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), limit=1)
    for _ in range(3):  # over the limit, yet never refused: the limiter never takes the bot down
        limiter.check(IdentityKey("slack", "T", "U"))


async def test_an_unlinked_teams_sender_is_limited_before_the_connector_or_graph_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a window far longer than the test: which messages are refused does not depend on how fast they go
    async with running_bot(tmp_path, monkeypatch, env={"PVEBOT_RATE_LIMIT": "3", "PVEBOT_RATE_WINDOW": "3600"}) as bot:
        # nobody knows the stranger: each look-up is a roster call that 404s, then a Graph call that 404s
        for _ in range(8):
            status, _ = await bot.post(message(bot.fake, "pve vm list", user="aad-stranger",
                                               conversation="a:1on1-stranger"))
            assert status == 200
        replies = [card_text(c.body) for c in bot.fake.activities("POST")]
        roster = [c for c in bot.fake.activities("GET") if "/members/" in c.path]
        graph = bot.fake.graph_requests()
    assert len(replies) == 8
    assert all("you are not linked to pvebot" in r for r in replies[:3]), replies
    assert all(LIMITED in r for r in replies[3:]), replies
    # the 5 refused cost nothing: at most one look-up of each kind per message that got past the limit
    assert 0 < len(roster) <= 3 and 0 < len(graph) <= 3, (roster, graph)
