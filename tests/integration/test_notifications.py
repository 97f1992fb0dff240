"""Notification subscriptions and their outbox, through the dispatcher and the notifier router (SQLite).

Typed in a channel, a subscription hears its company's events only; a backup run is split per company
and whole in provider channels; an event recorded twice is sent once; a burst in one channel is one
digest, one a second; 429s wait, a gone channel is marked broken and its owner told once; a sender
that dies before sending leaves the message to the next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.bootstrap import App
from core.chat import ConversationRef, MessageRef, Reply
from core.errors import ExternalSystemError
from core.model import OutboxState, Topic
from core.principal import Scope
from core.services import notifications, outbox
from core.services.notifications import Event, Item
from tests.fakes import FakeClock
from tests.support import ChatDriver, database, make_storage, provision, test_app

ACME_CH = ConversationRef(platform="slack", channel="C0ACMEOPS", extra=(("team", "T0ACME"),))
GLOBEX_CH = ConversationRef(platform="slack", channel="C0GLOBEX", extra=(("team", "T0GLOBEX"),))
HOST_CH = ConversationRef(platform="slack", channel="C0HOSTOPS", extra=(("team", "T0HOST"),))
POLICY = outbox.Policy(lease=timedelta(seconds=30))


class SlackApiLike(Exception):
    """What slack_sdk raises, as far as the router looks at it: a response with an ``error``."""

    def __init__(self, error: str, status: int = 200) -> None:
        super().__init__(error)
        self.response = {"error": error}
        self.status_code = status


class FakeSlack:
    """Takes posts per channel; ``fail[channel]`` holds exceptions to raise first, in order."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.posts: list[tuple[str, Reply, float]] = []
        self.fail: dict[str, list[Exception]] = {}

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        pending = self.fail.get(conversation.channel)
        if pending:
            raise pending.pop(0)
        self.posts.append((conversation.channel, reply, self.clock.monotonic()))
        return MessageRef(conversation=conversation, message_id=str(len(self.posts)))

    def update(self, message: MessageRef, reply: Reply) -> None:
        raise AssertionError("notifications are never edited")

    def to(self, channel: str) -> list[str]:
        return [r.plain_text() for c, r, _ in self.posts if c == channel]


class World:
    def __init__(self, app: App, clock: FakeClock, slack: FakeSlack) -> None:
        self.app, self.clock, self.slack = app, clock, slack
        self.chat = ChatDriver(app)

    def run(self, text: str, *, as_: str, where: ConversationRef) -> str:
        self.chat.conversation = where
        return self.chat.run(text, as_=as_, post=False).plain_text()

    def company_id(self, slug: str) -> int:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            company = uow.companies.by_slug(slug)
            assert company is not None and company.id is not None
            return company.id

    def deliver(self) -> outbox.Pass:
        return outbox.deliver_due(self.app.deps, policy=POLICY)


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    clock = FakeClock()
    with database("sqlite", tmp_path) as url:
        storage = make_storage(url, clock=clock)
        provision(storage)
        app = test_app(storage)
        slack = FakeSlack(clock)
        app.notifier.add("slack", slack)
        try:
            yield World(app, clock, slack)
        finally:
            app.close()


def _run(w: World, acme: int, globex: int, *, key: str = "vzdump:lab:pve1:UPID:1") -> Event:
    return Event(topic=Topic.BACKUPS, key=key, title="Backup run on lab/pve1", items=(
        Item("lab", 100, "web-01", acme, False, "ok", "00:01:02, 1.2 GiB"),
        Item("lab", 101, "db-02", acme, True, "failed", "no space left on device"),
        Item("lab", 200, "globex-app", globex, False, "ok", "00:00:30, 800 MiB"),
        Item("lab", 300, "orphan-01", None, False, "ok", "00:00:10, 10 MiB"),
    ))


def test_subscribe_list_unsubscribe_in_the_channel(w: World) -> None:
    said = w.run("notify subscribe backups --only failures", as_="alice@acme.example", where=ACME_CH)
    assert "now hears about backups of your company (subscription 1)" in said
    again = w.run("notify subscribe backups --only failures", as_="alice@acme.example", where=ACME_CH)
    assert "already hears" in again
    listing = w.run("notify list", as_="bob@acme.example", where=ACME_CH)
    assert "slack:C0ACMEOPS" in listing and "failures only" in listing and "active" in listing
    # the other company neither sees nor removes it, and hears "not found" as for one that never was
    assert "no notification subscriptions" in w.run("notify list", as_="carol@globex.example", where=GLOBEX_CH)
    assert "subscription 1 not found" in w.run("notify unsubscribe 1", as_="carol@globex.example", where=GLOBEX_CH)
    assert "subscription 99 not found" in w.run("notify unsubscribe 99", as_="carol@globex.example", where=GLOBEX_CH)
    # a user may not, updates and --all are the provider's
    assert "cannot use 'notify subscribe'" in w.run("notify subscribe jobs", as_="bob@acme.example", where=ACME_CH)
    assert "super_admin" in w.run("notify subscribe updates", as_="alice@acme.example", where=ACME_CH)
    assert "super_admin" in w.run("notify subscribe jobs --all", as_="alice@acme.example", where=ACME_CH)
    assert "every company" in w.run("notify subscribe updates", as_="root@host.example", where=HOST_CH)
    assert "removed subscription 1" in w.run("notify unsubscribe 1", as_="alice@acme.example", where=ACME_CH)


def test_a_topic_may_be_typed_in_the_singular_and_a_wrong_one_is_quoted(w: World) -> None:
    said = w.run("notify subscribe Backup", as_="alice@acme.example", where=ACME_CH)
    assert "now hears about backups of your company" in said
    wrong = w.run("notify subscribe bakups", as_="alice@acme.example", where=ACME_CH)
    assert "'bakups' is not a topic; one of: backups, jobs, approvals, updates" in wrong
    assert "no notification subscriptions" not in w.run("notify list", as_="alice@acme.example", where=ACME_CH)


def test_a_backup_run_is_split_per_company_and_whole_for_the_provider(w: World) -> None:
    w.run("notify subscribe backups", as_="alice@acme.example", where=ACME_CH)
    w.run("notify subscribe backups", as_="carol@globex.example", where=GLOBEX_CH)
    w.run("notify subscribe backups --all", as_="root@host.example", where=HOST_CH)
    event = _run(w, w.company_id("acme"), w.company_id("globex"))
    assert notifications.publish(w.app.deps, event) == 3
    assert notifications.publish(w.app.deps, event) == 0  # pushed, then pulled: the same event
    assert w.deliver().sent == 3
    assert w.deliver().sent == 0
    (acme,), (globex,), (host,) = w.slack.to("C0ACMEOPS"), w.slack.to("C0GLOBEX"), w.slack.to("C0HOSTOPS")
    assert "web-01" in acme and "db-02" in acme and "no space left on device" in acme and "1 ok, 1 failed" in acme
    assert "globex-app" not in acme and "orphan-01" not in acme
    assert "globex-app" in globex and "web-01" not in globex and "db-02" not in globex and "orphan-01" not in globex
    assert all(name in host for name in ("web-01", "db-02", "globex-app", "orphan-01"))
    listing = w.run("notify list", as_="alice@acme.example", where=ACME_CH)
    assert "never" not in listing


def test_the_last_delivery_says_today_yesterday_or_its_year(w: World) -> None:
    # "11-21 09:00" has no year and reads either way round: a date says today/yesterday or carries its year
    w.run("notify subscribe backups", as_="alice@acme.example", where=ACME_CH)
    assert notifications.publish(w.app.deps, _run(w, w.company_id("acme"), w.company_id("globex"))) == 1
    assert w.deliver().sent == 1
    assert "today 09:00" in w.run("notify list", as_="alice@acme.example", where=ACME_CH)
    w.clock.advance(days=1)
    assert "yesterday 09:00" in w.run("notify list", as_="alice@acme.example", where=ACME_CH)
    w.clock.advance(days=5)
    listing = w.run("notify list", as_="alice@acme.example", where=ACME_CH)
    assert "2026-11-21 09:00" in listing and "11-21 09:00" not in listing.replace("2026-11-21 09:00", "")


def test_only_failures(w: World) -> None:
    # --vm names a VM Proxmox lists: test_backup_events.py shows it against the simulator
    w.run("notify subscribe backups --only failures", as_="alice@acme.example", where=ACME_CH)
    acme, globex = w.company_id("acme"), w.company_id("globex")
    notifications.publish(w.app.deps, _run(w, acme, globex))
    ok_only = Event(topic=Topic.BACKUPS, key="vzdump:lab:pve2:UPID:2", title="Backup run on lab/pve2",
                    items=(Item("lab", 100, "web-01", acme, False, "ok", "1 GiB"),))
    assert notifications.publish(w.app.deps, ok_only) == 0
    w.deliver()
    (acme_text,) = w.slack.to("C0ACMEOPS")
    assert "db-02" in acme_text and "web-01" not in acme_text


def test_a_burst_is_one_digest_and_one_message_a_second_per_channel(w: World) -> None:
    w.run("notify subscribe backups", as_="alice@acme.example", where=ACME_CH)
    acme, globex = w.company_id("acme"), w.company_id("globex")
    for n in range(13):
        notifications.publish(w.app.deps, _run(w, acme, globex, key=f"vzdump:lab:pve1:UPID:{n}"))
    done = w.deliver()
    assert (done.sent, done.rows) == (1, 13)
    (text,) = w.slack.to("C0ACMEOPS")
    assert "13 notifications, 13 failed" in text and "db-02" in text
    notifications.publish(w.app.deps, _run(w, acme, globex, key="vzdump:lab:pve1:UPID:late"))
    assert w.deliver().sent == 0  # within the second of the last one
    w.clock.advance(seconds=1)
    assert w.deliver().sent == 1
    times = [t for c, _, t in w.slack.posts if c == "C0ACMEOPS"]
    assert times[1] - times[0] >= 1.0


def test_429_waits_and_5xx_backs_off_within_the_bound(w: World) -> None:
    w.run("notify subscribe backups", as_="alice@acme.example", where=ACME_CH)
    w.slack.fail["C0ACMEOPS"] = [SlackApiLike("ratelimited", 429), ExternalSystemError("Slack answered HTTP 503")]
    notifications.publish(w.app.deps, _run(w, w.company_id("acme"), w.company_id("globex")))
    assert w.deliver().postponed == 1
    assert w.deliver().sent == 0  # not before its time
    w.clock.advance(seconds=2)
    assert w.deliver().postponed == 1  # the 5xx
    w.clock.advance(seconds=5)
    assert w.deliver().sent == 1
    assert len(w.slack.to("C0ACMEOPS")) == 1
    # what cannot get through within the bound is dropped, not retried forever
    w.slack.fail["C0ACMEOPS"] = [SlackApiLike("ratelimited", 429)] * 1000
    notifications.publish(w.app.deps, _run(w, w.company_id("acme"), w.company_id("globex"), key="k2"))
    for _ in range(200):
        w.clock.advance(seconds=300)
        if w.deliver().dropped:
            break
    else:
        pytest.fail("never dropped")
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        assert not uow.outbox.due(now=w.clock.now() + timedelta(days=1))


def test_a_gone_channel_is_marked_broken_and_its_owner_told_once(w: World) -> None:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        acme = uow.companies.by_slug("acme")
        assert acme is not None
        acme.approval_policy = {**acme.approval_policy, "approvers_channel": "slack:C0APPROVERS"}
        uow.commit()
    w.run("notify subscribe backups", as_="alice@acme.example", where=ACME_CH)
    w.run("notify subscribe jobs", as_="alice@acme.example", where=ACME_CH)
    w.slack.fail["C0ACMEOPS"] = [SlackApiLike("is_archived")] * 3
    notifications.publish(w.app.deps, _run(w, w.company_id("acme"), w.company_id("globex")))
    done = w.deliver()
    assert done.broken == ["slack:C0ACMEOPS"] and done.dropped == 1
    notifications.publish(w.app.deps, _run(w, w.company_id("acme"), w.company_id("globex"), key="k2"))
    w.clock.advance(seconds=2)
    w.deliver()
    told = w.slack.to("C0APPROVERS")
    assert len(told) == 1 and "can no longer post into slack:C0ACMEOPS" in told[0]
    listing = w.run("notify list", as_="alice@acme.example", where=ACME_CH)
    assert "broken: Slack says is_archived" in listing
    assert len(w.slack.fail["C0ACMEOPS"]) == 2  # tried once: a broken subscription queues nothing more


def test_a_sender_that_dies_before_sending_leaves_it_to_the_next_once(w: World) -> None:
    w.run("notify subscribe backups", as_="alice@acme.example", where=ACME_CH)
    notifications.publish(w.app.deps, _run(w, w.company_id("acme"), w.company_id("globex")))
    # a sender claims the row, then its process dies before posting
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        (row,) = uow.outbox.due(now=w.clock.now())
        assert row.id is not None and uow.outbox.claim(row.id, now=w.clock.now(), until=w.clock.now() + POLICY.lease)
        uow.commit()
    assert w.deliver().sent == 0  # held by the dead sender's lease
    w.clock.advance(seconds=31)
    assert w.deliver().sent == 1
    w.clock.advance(seconds=31)
    assert w.deliver().sent == 0
    assert len(w.slack.to("C0ACMEOPS")) == 1
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        assert uow.outbox.pending(1) == 0


def test_a_waiting_teams_channel_keeps_its_messages(w: World) -> None:
    teams = ConversationRef(platform="teams", channel="19:ops@thread.tacv2")
    assert notifications.channel_of(teams.with_thread("x")) == "teams:19:ops@thread.tacv2"
    w.run("notify subscribe backups", as_="alice@acme.example", where=teams)
    notifications.publish(w.app.deps, _run(w, w.company_id("acme"), w.company_id("globex")))
    assert w.deliver().postponed == 1
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        assert [m.state for m in uow.outbox.due(now=w.clock.now() + timedelta(minutes=2))] == [OutboxState.PENDING]


def test_a_settled_jobs_outcome_reaches_its_companys_subscribers_only(w: World) -> None:
    from core.model import Job, JobState

    w.run("notify subscribe jobs --only failures", as_="alice@acme.example", where=ACME_CH)
    w.run("notify subscribe jobs", as_="carol@globex.example", where=GLOBEX_CH)
    acme = w.company_id("acme")
    job = Job(id="jobabc123", request_id="r1", company_id=acme, actor_user_id=1, action="vm.start",
              target={"cluster": "lab", "vmid": 100, "name": "web-01"}, params={}, state=JobState.FAILED,
              created_at=w.clock.now(), summary="start web-01 (lab/100)", result="VM 100 is locked")
    assert notifications.publish(w.app.deps, notifications.job_event(job)) == 1
    w.deliver()
    (text,) = w.slack.to("C0ACMEOPS")
    assert "failed: start web-01" in text and "VM 100 is locked" in text
    assert w.slack.to("C0GLOBEX") == []


def test_approval_requests_and_decisions_reach_the_companys_approvals_subscribers(tmp_path: Path) -> None:
    from tests.fakes import FakeHypervisors, FakeQueue

    clock = FakeClock()
    with database("sqlite", tmp_path) as url:
        storage = make_storage(url, clock=clock)
        provision(storage)
        hypervisors = FakeHypervisors()
        lab = hypervisors.cluster("lab")
        lab.add(101, "web-01", pool="acme")
        lab.add(102, "db-01", pool="acme", status="stopped")
        lab.add(201, "gx-01", pool="globex", status="stopped")
        app = test_app(storage, hypervisors=hypervisors, queue=FakeQueue())
        slack = FakeSlack(clock)
        app.notifier.add("slack", slack)
        w = World(app, clock, slack)
        try:
            w.run("notify subscribe approvals", as_="alice@acme.example", where=ACME_CH)
            w.run("notify subscribe approvals --only failures", as_="erin@acme.example", where=HOST_CH)
            w.run("notify subscribe approvals", as_="carol@globex.example", where=GLOBEX_CH)
            w.run("notify subscribe approvals --all", as_="root@host.example", where=HOST_CH)
            asked = w.run("vm delete db-01 --reason cleanup", as_="bob@acme.example", where=ACME_CH)
            assert "apr-" in asked and "Pending · expires in" in asked
            w.deliver()
            (requested,) = w.slack.to("C0ACMEOPS")
            assert "vm.delete on db-01" in requested
            assert "requested by Bob User: cleanup" in requested
            approval_id = requested.split("apr-", 1)[1].split()[0]
            clock.advance(seconds=2)
            w.run(f"deny apr-{approval_id} not today", as_="alice@acme.example", where=ACME_CH)
            w.deliver()
            decided = w.slack.to("C0ACMEOPS")[1]
            assert "denied by Alice Admin" in decided and f"apr-{approval_id}" in decided
            # the provider channel heard both; the failures-only one only the denial; globex nothing
            host = w.slack.to("C0HOSTOPS")
            assert len(host) == 2 and "🔔" in host[0] and "⛔" in host[1] and "⛔" not in host[0]
            assert w.slack.to("C0GLOBEX") == []
            import sqlalchemy as sa

            from adapters.sql import tables as t

            c = t.notify_outbox.c
            with storage.engine.connect() as conn:
                keys = sorted((r.subscription_id, r.event_key.rsplit(":", 1)[1], r.state) for r in conn.execute(
                    sa.select(c.subscription_id, c.event_key, c.state)))
            assert keys == [(1, "denied", "sent"), (1, "pending", "sent"), (2, "denied", "sent"),
                            (4, "denied", "sent"), (4, "pending", "sent")]
        finally:
            app.close()


_DECLARED = """\
notifications:
  - {topic: updates, channel: "slack:C0HOSTOPS"}
"""


def _with_declared(acme_notifications: str) -> str:
    from tests.support import STANDARD_DOC

    anchor = "    quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}\n"
    assert STANDARD_DOC.count(anchor) == 1
    return _DECLARED + STANDARD_DOC.replace(anchor, anchor + acme_notifications)


def test_subscriptions_declared_in_the_provisioning_file(w: World) -> None:
    import pytest as _pytest

    from core.errors import ConfigurationError
    from core.services import provisioning

    acme = ('    notifications:\n'
            '      - {topic: backups, channel: "teams:19:acme-ops@thread.tacv2", only_failures: true}\n'
            '      - {topic: jobs, channel: "slack:C0ACMEJOBS", vm: web-01}\n')
    storage = w.app.storage
    changes = provision(storage, _with_declared(acme))
    assert "+ subscription backups teams:19:acme-ops@thread.tacv2 --only failures for acme" in changes
    assert "+ subscription updates slack:C0HOSTOPS for every company" in changes
    assert provision(storage, _with_declared(acme)) == []  # a second run changes nothing
    w.run("notify subscribe backups", as_="alice@acme.example", where=ACME_CH)  # typed, not declared
    listing = w.run("notify list", as_="alice@acme.example", where=ACME_CH)
    assert "teams:19:acme-ops@thread.tacv2" in listing and "waiting: the bot has not been added" in listing
    assert "(declared)" in listing and "updates" not in listing  # the provider's is not acme's to see
    assert "updates" in w.run("notify list", as_="root@host.example", where=HOST_CH)
    with storage.uow_factory(Scope.everything()) as uow:
        exported = provisioning.export(uow)
    assert exported["notifications"] == [{"topic": "updates", "channel": "slack:C0HOSTOPS"}]
    acme_entry = next(c for c in exported["companies"] if c["slug"] == "acme")
    assert {"topic": "jobs", "channel": "slack:C0ACMEJOBS", "vm": "web-01"} in acme_entry["notifications"]
    # the file is authoritative over what it declared, never over what was typed
    changes = provision(storage, _with_declared("    notifications: []\n"))
    assert sorted(c[0] for c in changes) == ["-", "-"]
    listing = w.run("notify list", as_="alice@acme.example", where=ACME_CH)
    assert "slack:C0ACMEOPS" in listing and "teams:19:acme-ops" not in listing
    for bad, why in (("      - {topic: updates, channel: \"slack:C1\"}\n", "updates are for the provider"),
                     ("      - {topic: weather, channel: \"slack:C1\"}\n", "unknown topic 'weather'"),
                     ("      - {topic: jobs, channel: \"C1\"}\n", "slack:C0123ABCD or teams:")):
        with _pytest.raises(ConfigurationError, match=why):
            provision(storage, _with_declared("    notifications:\n" + bad))


def test_declaring_a_subscription_already_typed_in_its_channel_adds_no_second_one(w: World) -> None:
    w.run("notify subscribe backups", as_="alice@acme.example", where=ACME_CH)
    changes = provision(w.app.storage, _with_declared(
        '    notifications:\n      - {topic: backups, channel: "slack:C0ACMEOPS"}\n'))
    assert not [c for c in changes if "subscription backups slack:C0ACMEOPS" in c]
    with w.app.storage.uow_factory(Scope.everything()) as uow:
        same = [s for s in uow.subscriptions.list() if s.topic is Topic.BACKUPS and s.channel == "slack:C0ACMEOPS"]
    assert len(same) == 1 and not same[0].declared  # one row: every event reaches the channel once


def test_the_approvers_channel_is_the_companys_approvals_subscription(w: World) -> None:
    approvers = ConversationRef(platform="slack", channel="C0APPROVE", extra=(("team", "T0ACME"),))
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        acme = uow.companies.by_slug("acme")
        assert acme is not None
        acme.approval_policy = {**acme.approval_policy, "approvers_channel": "slack:C0APPROVE"}
        uow.commit()
    # the older setting keeps working, and notify list shows it with the channels typed in chat
    listing = w.run("notify list", as_="bob@acme.example", where=ACME_CH)
    assert "slack:C0APPROVE" in listing and "approval cards" in listing, listing
    row = next(line for line in listing.splitlines() if "slack:C0APPROVE" in line)
    assert "approvals" in row and "acme" in row and "active" in row, row
    assert "C0APPROVE" not in w.run("notify list", as_="carol@globex.example", where=GLOBEX_CH)
    # typed there, it would be a second copy of every request beside its card
    said = w.run("notify subscribe approvals", as_="alice@acme.example", where=approvers)
    assert "acme's approvers channel: it hears of every approval request and decision already" in said, said
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        assert uow.subscriptions.list() == []
    # other topics there, and approvals elsewhere, are subscriptions as before
    assert "now hears about backups" in w.run("notify subscribe backups", as_="alice@acme.example", where=approvers)
    assert "now hears about approvals" in w.run("notify subscribe approvals", as_="alice@acme.example",
                                                 where=ACME_CH)
