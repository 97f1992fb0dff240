"""Metric labels never carry what people type: a tenant's VM names, emails or arguments stay out of /metrics."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.observe import ObservedDispatcher
from commands import build_registry
from core.chat import CommandRequest, ConversationRef, IdentityKey

REGISTRY = build_registry()
DISPATCHER = ObservedDispatcher(registry=REGISTRY, deps=None)  # type: ignore[arg-type]  # _name needs no deps
WORDS = st.sampled_from(["vm", "list", "start", "snapshot", "approve", "job", "status", "help", "--page", "2",
                         "web-01", "alice@acme.example", "acme/101", "'quoted arg'"])


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=60), st.lists(WORDS, max_size=6).map(" ".join)))
def test_the_command_label_is_a_registered_name_or_invalid(text: str) -> None:
    request = CommandRequest(identity=IdentityKey("slack", "T", "U"), text=text,
                             conversation=ConversationRef(platform="shell", channel="c"), request_id="r")
    assert DISPATCHER._name(request) in {*REGISTRY.names, "(invalid)"}
