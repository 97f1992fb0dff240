"""Notification tenancy as a property: no message a company's channel is given names another company's VM.

Hypothesis builds companies, VMs owned by one of them or by none, backup runs over any mix of them
and job events, and subscriptions of each company or of the provider (every company), with and
without ``--vm`` and ``--only failures``. For every subscription and event, the message routing
produces (:func:`core.services.notifications.message_for`) must name only VMs of the subscription's
company; a provider subscription sees every VM of a run. The same holds for backup runs generated
as vzdump writes its task log (per-guest outcomes, warnings, reasons, sizes), turned into events by
:func:`core.services.backup_events.run_event` with the owners pvebot's bindings give, and for the
digest a burst of them becomes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from core.model import Subscription, TaskInfo, Topic
from core.services.backup_events import Owner, run_event
from core.services.notifications import Event, Item, digest, message_for

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


# ---- backup runs as Proxmox logs them --------------------------------------------------------

REASONS = ["no space left on device", "guest agent not running", "unable to open file - Permission denied"]


@st.composite
def runs(draw: st.DrawFn) -> tuple[dict[int, int | None], list[tuple[TaskInfo, list[str]]], list[Subscription]]:
    """Companies' VMs (and ownerless ones), vzdump tasks over any mix of them with per-guest outcomes in
    the log the way vzdump writes it, and backup subscriptions of each company or of the provider."""
    owned = draw(owners)
    tasks = []
    for n in range(draw(st.integers(1, 3))):
        vmids = draw(st.lists(st.sampled_from(sorted(owned)), min_size=1, max_size=8, unique=True))
        lines = ["INFO: starting new backup job: vzdump --all 1 --storage local"]
        errors = 0
        for vmid in vmids:
            outcome = draw(st.sampled_from(["ok", "warning", "error"]))
            lines.append(f"INFO: Starting Backup of VM {vmid} (qemu)")
            if outcome == "error":
                errors += 1
                lines.append(f"ERROR: Backup of VM {vmid} failed - {draw(st.sampled_from(REASONS))}")
                continue
            if outcome == "warning":
                lines.append(f"WARN: {draw(st.sampled_from(REASONS))}")
            lines += [f"INFO: archive file size: {draw(st.integers(1, 900))}MB",
                      f"INFO: Finished Backup of VM {vmid} (00:00:0{draw(st.integers(1, 9))})"]
        status = "job errors" if errors else "OK"
        lines.append(f"TASK {'ERROR: ' if errors else ''}{status}")
        task = TaskInfo(upid=f"UPID:pve{n}:0000{n}:00:00:vzdump::root@pam:", node=f"pve{n}", type="vzdump", id="",
                        user="root@pam", starttime=1_765_000_000 + n, endtime=1_765_000_100 + n, status=status)
        tasks.append((task, lines))
    subscriptions = [
        Subscription(company_id=draw(st.sampled_from([*COMPANIES, None])), topic=Topic.BACKUPS,
                     channel=f"slack:C{i}", created_by=None, created_at=NOW,
                     vm=draw(st.one_of(st.none(), st.sampled_from(sorted(owned)).map(_name))),
                     only_failures=draw(st.booleans()))
        for i in range(draw(st.integers(1, 6)))
    ]
    return owned, tasks, subscriptions


@settings(max_examples=200, deadline=None)
@given(runs())
def test_no_backup_message_or_digest_names_another_companys_vm(
        world: tuple[dict[int, int | None], list[tuple[TaskInfo, list[str]]], list[Subscription]]) -> None:
    owned, tasks, subscriptions = world
    by_vmid = {v: Owner(name=_name(v), company_id=c) for v, c in owned.items()}
    events = [run_event(cluster="lab", task=task, lines=lines, owners=by_vmid) for task, lines in tasks]
    for subscription in subscriptions:
        heard = [found for found in (message_for(subscription, e) for e in events) if found is not None]
        texts = [reply.plain_text() + "\n" + summary for reply, summary, _ in heard]
        if len(heard) > 1:  # a burst in one channel goes out as one digest of the summaries
            texts.append(digest([(summary, failed) for _, summary, failed in heard]).plain_text())
        for text in texts:
            named = {v for v in owned if _name(v) in text or f"lab/{v})" in text}
            if subscription.company_id is not None:
                assert all(owned[v] == subscription.company_id for v in named), (subscription, text)
    # the provider's unfiltered channel hears every guest of every run
    for event, (_, lines) in zip(events, tasks, strict=True):
        provider = Subscription(company_id=None, topic=Topic.BACKUPS, channel="slack:P", created_by=None,
                                created_at=NOW)
        found = message_for(provider, event)
        assert found is not None
        in_log = {int(line.split()[5]) for line in lines if line.startswith("INFO: Starting Backup of VM ")}
        assert {i.vmid for i in event.items} == in_log
        assert all(_name(v) in found[0].plain_text() for v in in_log)
