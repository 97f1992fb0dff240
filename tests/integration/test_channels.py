"""Known channels on SQLite and MariaDB: captured cheaply, resolved per name, never across tenants by guess."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import sqlalchemy as sa

from bot.bootstrap import Storage
from core.chat import ChannelRef
from core.errors import DuplicateRequest
from core.model import KnownChannel
from core.principal import Scope
from core.services import channels
from tests.fakes import FakeClock

CHANNEL = ChannelRef(platform="teams", channel_id="19:ops@thread.tacv2", workspace_id="tenant-acme",
                     service_url="https://smba.trafficmanager.net/amer/", tenant_id="tenant-acme", bot_id="28:bot",
                     bot_name="pvebot", bot_channel="msteams", conversation_type="channel")


@pytest.fixture
def statements(storage: Storage) -> Iterator[list[str]]:
    """Every SQL statement the engine runs from now on."""
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    sa.event.listen(storage.engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(storage.engine, "before_cursor_execute", record)


def _stored(storage: Storage) -> list[KnownChannel]:
    with storage.uow_factory(Scope.everything()) as uow:
        return uow.channels.with_id(platform="teams", channel_id=CHANNEL.channel_id)


def test_capture_writes_once_and_again_only_when_the_reference_changes(
    storage: Storage, clock: FakeClock, statements: list[str]
) -> None:
    seen = channels.SeenChannels()
    assert channels.capture(storage.uow_factory, CHANNEL, clock=clock, seen=seen) is True
    [row] = _stored(storage)
    assert (row.workspace_id, ChannelRef.from_dict(row.reference), row.updated_at) == (
        "tenant-acme", CHANNEL, clock.now())

    statements.clear()
    clock.advance(minutes=5)
    assert channels.capture(storage.uow_factory, CHANNEL, clock=clock, seen=seen) is False
    assert statements == []  # seen in this process: not even a read

    # another process (an empty memory) reads once and writes nothing for the same reference
    assert channels.capture(storage.uow_factory, CHANNEL, clock=clock, seen=channels.SeenChannels()) is False
    assert not [s for s in statements if s.lstrip().upper().startswith(("INSERT", "UPDATE"))]
    assert _stored(storage)[0].updated_at == row.updated_at

    moved = replace(CHANNEL, service_url="https://smba.trafficmanager.net/emea/")
    assert channels.capture(storage.uow_factory, moved, clock=clock, seen=seen) is True
    [row] = _stored(storage)
    assert ChannelRef.from_dict(row.reference) == moved and row.updated_at == clock.now()


def test_a_channel_is_stored_once_per_platform_workspace_and_id(storage: Storage, clock: FakeClock) -> None:
    with storage.uow_factory(Scope.everything()) as uow:
        uow.channels.add(KnownChannel(platform="teams", workspace_id="tenant-acme", channel_id=CHANNEL.channel_id,
                                      reference=CHANNEL.to_dict(), updated_at=clock.now()))
        uow.commit()
    with storage.uow_factory(Scope.everything()) as uow, pytest.raises(DuplicateRequest):
        uow.channels.add(KnownChannel(platform="teams", workspace_id="tenant-acme", channel_id=CHANNEL.channel_id,
                                      reference=CHANNEL.to_dict(), updated_at=clock.now()))


def test_names_resolve_to_the_captured_reference_or_say_why_not(storage: Storage, clock: FakeClock) -> None:
    name = f"teams:{CHANNEL.channel_id}"
    with storage.uow_factory(Scope.everything()) as uow:
        slack = channels.resolve(uow, "slack:C0123")
        waiting = channels.resolve(uow, name)
    assert slack.channel == ChannelRef(platform="slack", channel_id="C0123")  # the bot token suffices
    assert waiting.waiting and waiting.problem == (
        "the bot has not been added to this Teams channel (type any pvebot command there once)")
    assert channels.describe(waiting) == f"the approvers channel {name} cannot be reached yet: {waiting.problem}"

    channels.capture(storage.uow_factory, CHANNEL, clock=clock, seen=channels.SeenChannels())
    with storage.uow_factory(Scope.everything()) as uow:
        assert channels.resolve(uow, name).channel == CHANNEL


def test_an_id_reported_by_two_tenants_is_not_guessed(storage: Storage, clock: FakeClock) -> None:
    # whichever row came first, posting there could hand one company's card to another tenant
    other = replace(CHANNEL, workspace_id="tenant-other", tenant_id="tenant-other")
    for channel in (CHANNEL, other):
        channels.capture(storage.uow_factory, channel, clock=clock, seen=channels.SeenChannels())
    with storage.uow_factory(Scope.everything()) as uow:
        resolution = channels.resolve(uow, f"teams:{CHANNEL.channel_id}")
    assert resolution.channel is None
    assert resolution.problem is not None and "more than one Teams tenant" in resolution.problem
