"""Notification tenancy as a property: no message a company's channel is given names another company's VM.

Hypothesis builds companies, VMs owned by one of them or by none, backup runs over any mix of them
and job events, and subscriptions of each company or of the provider (every company), with and
without ``--vm`` and ``--only failures``. For every subscription and event, the message routing
produces (:func:`core.services.notifications.message_for`) must name only VMs of the subscription's
company; a provider subscription sees every VM of a run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import Subscription, Topic
from core.services.notifications import Event, Item, message_for

COMPANIES = [1, 2, 3]
NOW = datetime(2026, 12, 1, tzinfo=UTC)

owners = st.dictionaries(st.integers(100, 140), st.sampled_from([*COMPANIES, None]), min_size=1, max_size=15)


def _name(vmid: int) -> str:
    return f"vm{vmid}x"  # never a substring of another VM's name


@st.composite
def worlds(draw: st.DrawFn) -> tuple[dict[int, int | None], list[Event], list[Subscription]]:
    owned = draw(owners)
    events: list[Event] = []
    for n in range(draw(st.integers(1, 4))):
        vmids = draw(st.lists(st.sampled_from(sorted(owned)), min_size=1, max_size=8, unique=True))
        items = tuple(Item("lab", v, _name(v), owned[v], draw(st.booleans()), "ok", "reason") for v in vmids)
        events.append(Event(topic=Topic.BACKUPS, key=f"run{n}", title=f"Backup run {n}", items=items))
    for n, vmid in enumerate(draw(st.lists(st.sampled_from(sorted(owned)), max_size=4))):
        company = owned[vmid]
        if company is not None:
            events.append(Event(topic=Topic.JOBS, key=f"job{n}", title=f"job on {_name(vmid)}",
                                company_id=company, vm=_name(vmid), vmid=vmid, failed=draw(st.booleans())))
    subscriptions = [
        Subscription(company_id=draw(st.sampled_from([*COMPANIES, None])), topic=draw(st.sampled_from(
            [Topic.BACKUPS, Topic.JOBS])), channel=f"slack:C{i}", created_by=None, created_at=NOW,
            vm=draw(st.one_of(st.none(), st.sampled_from(sorted(owned)).map(_name))),
            only_failures=draw(st.booleans()))
        for i in range(draw(st.integers(1, 6)))
    ]
    return owned, events, subscriptions


@settings(max_examples=200, deadline=None)
@given(worlds())
def test_no_message_names_another_companys_vm(world: tuple[dict[int, int | None], list[Event],
                                                           list[Subscription]]) -> None:
    owned, events, subscriptions = world
    for subscription in subscriptions:
        for event in events:
            found = message_for(subscription, event)
            if found is None:
                continue
            reply, summary, _ = found
            text = reply.plain_text() + "\n" + summary
            named = {v for v in owned if _name(v) in text}
            if subscription.company_id is not None:
                assert all(owned[v] == subscription.company_id for v in named), (subscription, event)
            elif event.items and subscription.vm is None and not subscription.only_failures:
                assert {i.vmid for i in event.items} <= named  # the provider hears the whole run
