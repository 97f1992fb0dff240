"""End to end: destructive commands become approval requests that a second person decides, then run once.

Every test types commands as chat users through the dispatcher (:class:`ChatDriver`), on SQLite and
on MariaDB, against an in-memory Proxmox (:class:`FakeHypervisors`) and a recording queue
(:class:`FakeQueue`). Queued jobs are then run with ``jobs.run`` as a worker would, and the fake
hypervisor's ``calls`` say what reached Proxmox.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest

from adapters.shell.outbox import OutboxEntry, OutboxReader
from bot.bootstrap import App, Storage
from core.chat import ActionStyle, Reply, Severity
from core.errors import ConfigurationError
from core.ids import show_approval, show_job
from core.model import (
    ApprovalRequest,
    ApprovalState,
    AuditEvent,
    Backup,
    GuestRef,
    GuestStatus,
    Job,
    JobState,
    Snapshot,
)
from core.principal import Scope
from core.services import jobs
from tests.fakes import FakeClock, FakeHypervisor, FakeHypervisors, FakeQueue
from tests.support import STANDARD_DOC, ChatDriver, approval_of, card_approval, job_of, principal, provision, test_app

BOB = "bob@acme.example"
ALICE = "alice@acme.example"
ERIN = "erin@acme.example"
ROOT = "root@host.example"
CAROL = "carol@globex.example"
DAVE = "dave@globex.example"
SAM = "sam@host.example"


class LabHypervisor(FakeHypervisor):
    """The fake lab, with a qemu config as Proxmox gives it: several disks, an EFI disk, a CD-ROM and a NIC."""

    def status(self, ref: GuestRef) -> GuestStatus:
        base = super().status(ref)
        return replace(base, config={
            "scsi0": f"local-lvm:vm-{ref.vmid}-disk-0,iothread=1,size=32G",
            "scsi1": f"ceph:vm-{ref.vmid}-disk-1,size=100G",
            "efidisk0": f"local-lvm:vm-{ref.vmid}-disk-2,efitype=4m,size=4M",
            "ide2": "local:iso/debian-12.iso,media=cdrom,size=600M",
            "net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0",
            "memory": "2048",
        })


@dataclass
class World:
    app: App
    chat: ChatDriver
    lab: LabHypervisor
    queue: FakeQueue
    clock: FakeClock
    ran: int = 0

    @property
    def storage(self) -> Storage:
        return self.app.storage

    def run_queue(self) -> list[str]:
        """Run what was enqueued since the last call, as one worker would; returns each job's end state."""
        out = []
        for _, job_id, _ in self.queue.enqueued[self.ran:]:
            out.append(jobs.run(self.app.deps, job_id))
        self.ran = len(self.queue.enqueued)
        return out

    def approval(self, reply_or_id: Reply | str) -> ApprovalRequest:
        approval_id = card_approval(reply_or_id) if isinstance(reply_or_id, Reply) else reply_or_id
        assert approval_id, reply_or_id
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            found = uow.approvals.get(approval_id)
        assert found is not None
        return found

    def job(self, job_id: str) -> Job:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            found = uow.jobs.get(job_id)
        assert found is not None
        return found

    def jobs(self) -> list[Job]:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            return uow.jobs.list(limit=100)

    def audit(self, prefix: str = "") -> list[AuditEvent]:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            return [e for e in uow.audit.query(limit=1000) if e.action.startswith(prefix)]

    def proxmox_calls(self) -> list[tuple[str, Any]]:
        return [c for c in self.lab.calls if c[0] not in ("inventory", "identity")]

    def user_id(self, email: str) -> int:
        return principal(self.storage, email).user_id


def make_world(storage: Storage, clock: FakeClock, doc: str = STANDARD_DOC) -> World:
    provision(storage, doc)
    hypervisors = FakeHypervisors()
    lab = hypervisors.clusters["lab"] = LabHypervisor(cluster_name="lab")
    lab.add(101, "web-01", pool="acme")
    lab.add(102, "db-01", pool="acme", status="stopped")
    lab.add(201, "gx-01", pool="globex")
    lab.snaps[101] = [Snapshot("base"), Snapshot("pre-upgrade", parent="base"),
                      Snapshot("post-upgrade", parent="pre-upgrade")]
    lab.snaps[102] = [Snapshot("nightly"), Snapshot("before-migration", parent="nightly")]
    lab.backup_files[102] = [
        Backup(volid="local:backup/vzdump-qemu-102-2026_11_20-01_00_00.vma.zst", storage="local", vmid=102,
               size=3 * 1024**3, ctime=1795136400),
        Backup(volid="local:backup/vzdump-qemu-102-2026_11_19-01_00_00.vma.zst", storage="local", vmid=102,
               size=3 * 1024**3, ctime=1795050000),
    ]
    lab.backup_files[101] = [Backup(volid="local:backup/vzdump-qemu-101-2026_11_20-01_00_00.vma.zst",
                                    storage="local", vmid=101, size=1024**3, ctime=1795136400)]
    queue = FakeQueue()
    app = test_app(storage, hypervisors=hypervisors, queue=queue)
    return World(app=app, chat=ChatDriver(app), lab=lab, queue=queue, clock=clock)


@pytest.fixture
def world(storage: Storage, clock: FakeClock) -> World:
    return make_world(storage, clock)


def fields(reply: Reply) -> dict[str, str]:
    """The card's facts, shown or folded away (details)."""
    return {f.label: f.value for f in reply.fields + reply.details}


def entries_of(entries: list[OutboxEntry], message_id: str) -> list[Reply]:
    return [e.reply for e in entries if e.message_id == message_id]


def apr(reply: Reply) -> str:
    approval_id = card_approval(reply)
    assert approval_id, reply.plain_text()
    return show_approval(approval_id)


# ---- the request and its card ------------------------------------------------------------------


def test_delete_becomes_a_card_with_a_dry_run_preview_and_nothing_runs(world: World) -> None:
    reply = world.chat.run("vm delete db-01 --reason \"decommissioned after migration\"", as_=BOB)

    label = apr(reply)
    # the question first, then its state and time left, relative and absolute
    assert reply.title == "Delete db-01?"
    assert reply.severity is Severity.WARNING
    assert reply.text.splitlines()[0] == "Pending · expires in 30 min, 09:30 UTC"
    assert {f.label: f.value for f in reply.fields} == {
        "Requested by": "Bob User", "Reason": "decommissioned after migration", "Request": label}
    # what is destroyed, summed up where it cannot be missed
    assert reply.highlight == "Destroys 3 disks, 132 GiB, and snapshots nightly, before-migration · VM is stopped"
    assert {f.label: f.value for f in reply.details} == {
        "Action": "vm.delete",
        "Target": "db-01 — VMID 102 on lab/pve1",
        # every disk with its size; the CD-ROM and the NIC are not disks the delete destroys
        "Disks deleted": "efidisk0: local-lvm:vm-102-disk-2 (4M), scsi0: local-lvm:vm-102-disk-0 (32G), "
                         "scsi1: ceph:vm-102-disk-1 (100G)",
        "Snapshots deleted": "nightly, before-migration",
        # backups outlive the VM; only this VM's are listed
        "Backups kept": "local:backup/vzdump-qemu-102-2026_11_19-01_00_00.vma.zst, "
                        "local:backup/vzdump-qemu-102-2026_11_20-01_00_00.vma.zst",
        "Current state": "stopped",
    }
    approve, deny = reply.actions
    assert (approve.label, approve.command, approve.style) == ("Delete db-01", f"approve {label}", ActionStyle.DANGER)
    assert (deny.label, deny.command, deny.ask) == ("Reject", f"deny {label}", "Reason for rejecting (optional)")
    # the buttons are for acme's admins and the super_admin, never for the requester
    expected = {world.user_id(ALICE), world.user_id(ERIN), world.user_id(ROOT)}
    assert set(approve.only_for) == set(deny.only_for) == expected

    stored = world.approval(reply)
    assert stored.state is ApprovalState.PENDING
    assert stored.requester_user_id == world.user_id(BOB)
    assert stored.reason == "decommissioned after migration"
    assert stored.expires_at == world.clock.now().replace(minute=30)
    assert stored.target["vmid"] == 102 and stored.target["node"] == "pve1"
    # the card's message is remembered: the decision edits it and the job threads under it
    posted = OutboxReader(world.storage.engine, world.chat.conversation.channel).poll()
    assert stored.message_ref["message_id"] == posted[-1].message_id
    assert card_approval(posted[-1].reply) == stored.id

    assert world.queue.enqueued == [] and world.proxmox_calls() == []
    assert 102 in world.lab.guests
    [requested] = world.audit("approval.")
    assert (requested.action, requested.actor) == ("approval.requested", BOB)
    assert requested.target == f"{label} vm.delete db-01 (lab/102)"
    assert requested.detail == {"reason": "decommissioned after migration"}


def test_rollback_card_names_the_snapshot_it_returns_to_and_what_is_newer(world: World) -> None:
    reply = world.chat.run("snapshot rollback web-01 pre-upgrade --reason 'upgrade broke nginx'", as_=BOB)

    assert fields(reply)["Action"] == "snapshot.rollback"
    assert fields(reply)["Snapshot"] == "pre-upgrade"
    assert fields(reply)["Returns to"] == "pre-upgrade"
    assert fields(reply)["Newer snapshots"] == "post-upgrade"
    assert "Disks deleted" not in fields(reply)

    latest = world.chat.run("snapshot rollback web-01 post-upgrade", as_=BOB)
    assert fields(latest)["Newer snapshots"] == "none"

    missing = world.chat.run("snapshot rollback web-01 nope", as_=BOB)
    assert missing.severity is Severity.ERROR
    assert missing.text == "snapshot 'nope' not found on web-01 (lab/101)"

    assert world.chat.run(f"approve {apr(reply)}", as_=ALICE).severity is Severity.SUCCESS
    assert world.run_queue() == ["succeeded"]
    assert world.proxmox_calls() == [("qmrollback", 101)]
    with world.app.deps.uow_factory(Scope.everything()) as uow:
        assert len(uow.approvals.list(limit=10)) == 2  # the missing snapshot made no request


def test_a_redelivered_command_gives_the_same_request(world: World) -> None:
    first = world.chat.run("vm stop web-01", as_=BOB, request_id="slack-retry-1")
    again = world.chat.run("vm stop web-01", as_=BOB, request_id="slack-retry-1")

    assert apr(first) == apr(again)
    with world.app.deps.uow_factory(Scope.everything()) as uow:
        assert len(uow.approvals.list(limit=10)) == 1
    assert len(world.audit("approval.requested")) == 1


# ---- who may decide ----------------------------------------------------------------------------


@pytest.mark.parametrize("requester", [BOB, ALICE])
def test_the_requester_cannot_decide_their_own_request_admins_included(world: World, requester: str) -> None:
    label = apr(world.chat.run("vm stop web-01 --reason hung", as_=requester))

    if requester == ALICE:
        for command in (f"approve {label}", f"deny {label} changed my mind"):
            answer = world.chat.run(command, as_=ALICE)
            assert answer.severity is Severity.ERROR
            assert answer.text == "you cannot decide your own request: four eyes, another approver must"
    else:
        assert world.chat.run(f"approve {label}", as_=BOB).text == "your role (user) cannot use 'approve'"
    assert world.approval(label.removeprefix("apr-")).state is ApprovalState.PENDING
    assert world.queue.enqueued == []

    # the other admin may
    assert world.chat.run(f"approve {label}", as_=ERIN).severity is Severity.SUCCESS
    assert world.run_queue() == ["succeeded"]
    assert world.proxmox_calls() == [("qmstop", 101)]


def test_an_admin_of_another_company_is_told_it_does_not_exist(world: World) -> None:
    label = apr(world.chat.run("vm delete db-01", as_=BOB))

    nowhere = world.chat.run("approve apr-zzzzzzzzzz", as_=CAROL)
    assert nowhere.text == "apr-zzzzzzzzzz not found"
    for command in (f"approve {label}", f"deny {label} not yours"):
        answer = world.chat.run(command, as_=CAROL)
        assert answer.severity is Severity.ERROR
        assert answer.text == f"{label} not found"  # exactly as if it did not exist
    assert world.chat.run("approval list --all", as_=CAROL).text == "no approval requests"

    assert world.approval(label.removeprefix("apr-")).state is ApprovalState.PENDING
    assert world.queue.enqueued == []
    assert [e.action for e in world.audit("approval.")] == ["approval.requested"]


@pytest.mark.parametrize(("who", "role"), [(DAVE, "user"), (SAM, "salesperson")])
def test_users_and_salespeople_cannot_decide(world: World, who: str, role: str) -> None:
    label = apr(world.chat.run("vm stop web-01", as_=ALICE))

    for command in (f"approve {label}", f"deny {label}"):
        answer = world.chat.run(command, as_=who)
        assert answer.severity is Severity.ERROR
        assert answer.text == f"your role ({role}) cannot use '{command.split()[0]}'"
    assert world.approval(label.removeprefix("apr-")).state is ApprovalState.PENDING


def test_approval_list_shows_pending_requests_of_ones_own_company(world: World) -> None:
    label = apr(world.chat.run("vm stop web-01", as_=BOB))

    listed = world.chat.run("approval list", as_=ALICE)
    assert listed.table is not None
    assert [row[:4] for row in listed.table.rows] == [(label, "pending", "vm.stop", "web-01 (lab/101)")]
    # how long is left, then when (issue 17: times relative and absolute)
    assert listed.table.columns[4] == "expires" and listed.table.rows[0][4] == "in 30 min, 09:30 UTC"
    assert world.chat.run("approval list", as_=CAROL).text == "no approval requests pending"

    world.chat.run(f"deny {label}", as_=ERIN)
    assert world.chat.run("approval list", as_=ALICE).text == "no approval requests pending"
    decided = world.chat.run("approval list --all", as_=ALICE)
    assert decided.table is not None and decided.table.rows[0][:2] == (label, "denied")


# ---- approval, execution, and the thread -------------------------------------------------------


def test_super_admin_approves_and_the_job_runs_once_in_the_requests_thread(world: World) -> None:
    card = world.chat.run("vm delete db-01 --reason cleanup", as_=BOB)
    label = apr(card)
    reader = OutboxReader(world.storage.engine, world.chat.conversation.channel)
    card_message = reader.poll()[-1].message_id

    answer = world.chat.run(f"approve {label}", as_=ROOT)

    stored = world.approval(card)
    assert stored.state is ApprovalState.APPROVED
    assert stored.decided_by_user_id == world.user_id(ROOT)
    assert stored.job_id is not None
    assert answer.severity is Severity.SUCCESS
    assert answer.title == "Delete db-01: approved"
    assert answer.text == f"Approved by Root at 09:00 UTC · {show_job(stored.job_id)} queued"
    assert [job_id for _, job_id, _ in world.queue.enqueued] == [stored.job_id]

    job = world.job(stored.job_id)
    assert job.state is JobState.QUEUED
    assert job.approval_id == stored.id
    assert job.actor_user_id == world.user_id(BOB)  # it runs as the requester, with the requester's rights
    assert job.conversation["thread"] == card_message

    assert world.run_queue() == ["succeeded"]
    assert world.proxmox_calls() == [("qmdestroy", 102)]
    assert 102 not in world.lab.guests
    assert world.approval(card).state is ApprovalState.EXECUTED
    done = world.job(stored.job_id)
    assert done.state is JobState.SUCCEEDED
    assert done.message_ref["conversation"]["thread"] == card_message

    entries = reader.poll()
    # the card lost its buttons and says who approved it
    edited = entries_of(entries, card_message)
    assert edited and edited[0].actions == ()
    assert edited[0].text.startswith("Approved by Root at 09:00 UTC")
    # every copy, and the decider's own answer, is the same decided card
    assert edited[0] == answer
    # the job's progress: one message, posted once and edited to the end
    progress = entries_of(entries, done.message_ref["message_id"])
    assert progress[0].text == "🔄 running (0 s)"
    assert progress[-1].text == "✅ db-01 deleted with its disks (done in 0 s)"
    assert progress[-1].title == f"{show_job(done.id)}: delete db-01 (lab/102)"

    # a later click is told who decided, when, and what became of it; nothing runs again
    late = world.chat.run(f"approve {label}", as_=ALICE)
    assert late.severity is Severity.ERROR
    assert late.text == (f"{label} was already approved by Root at 2026-11-21 09:00 UTC "
                         f"({show_job(done.id)}, executed)")
    assert world.run_queue() == []
    assert world.proxmox_calls() == [("qmdestroy", 102)]

    trail = [(e.action, e.outcome) for e in world.audit() if e.action.startswith(("approval.", "vm."))]
    assert trail == [
        ("approval.requested", "ok"),
        ("approval.approved", "ok"),
        ("vm.delete", "queued"),
        ("approval.executed", "ok"),
        ("vm.delete", "succeeded"),
    ]


def test_a_failing_approved_job_marks_the_request_failed(world: World) -> None:
    label = apr(world.chat.run("vm stop web-01", as_=BOB))
    world.chat.run(f"approve {label}", as_=ALICE)
    world.lab.fail_next = "VM is locked (backup)"

    assert world.run_queue() == ["failed"]
    stored = world.approval(label.removeprefix("apr-"))
    assert stored.state is ApprovalState.FAILED
    assert stored.job_id is not None
    assert world.job(stored.job_id).result == "Proxmox task stop failed: VM is locked (backup)"
    [failed] = world.audit("approval.failed")
    assert failed.detail["job"] == show_job(stored.job_id)


# ---- expiry, denial, a changed world -----------------------------------------------------------


def test_an_expired_request_cannot_be_approved(world: World) -> None:
    card = world.chat.run("vm stop web-01", as_=BOB)
    label = apr(card)
    card_message = world.approval(card).message_ref["message_id"]
    world.clock.advance(minutes=29)
    assert world.chat.run("approval list", as_=ALICE).table is not None  # still pending a minute before
    world.clock.advance(minutes=1)

    answer = world.chat.run(f"approve {label}", as_=ALICE)

    expected = f"{label} expired at 2026-11-21 09:30 UTC; ask again if it is still needed"
    assert answer.severity is Severity.ERROR
    assert answer.text == expected
    assert world.chat.run(f"deny {label}", as_=ERIN).text == expected
    stored = world.approval(card)
    assert stored.state is ApprovalState.EXPIRED
    assert stored.job_id is None
    assert world.queue.enqueued == [] and world.proxmox_calls() == []
    [expired] = world.audit("approval.expired")
    assert (expired.actor, expired.target) == ("system", f"{label} vm.stop")
    # the card says so and has no buttons any more
    entries = OutboxReader(world.storage.engine, world.chat.conversation.channel).poll()
    last = entries_of(entries, card_message)[-1]
    assert last.actions == () and last.text.startswith("Expired 09:30 UTC: nobody decided in time")
    assert last.title == "Stop (hard) web-01: expired"


def test_listing_expires_what_is_due(world: World) -> None:
    label = apr(world.chat.run("vm reset web-01", as_=BOB))
    world.clock.advance(minutes=45)

    assert world.chat.run("approval list", as_=ALICE).text == "no approval requests pending"
    listed = world.chat.run("approval list --all", as_=ALICE)
    assert listed.table is not None and listed.table.rows[0][:3] == (label, "expired", "vm.reset")
    assert len(world.audit("approval.expired")) == 1


def test_deny_with_a_reason(world: World) -> None:
    card = world.chat.run("vm stop web-01 --reason hung", as_=BOB)
    label = apr(card)

    answer = world.chat.run(f"deny {label} not during business hours", as_=ALICE)

    # a rejection is no success: no green mark
    assert answer.severity is Severity.INFO
    assert answer.text == "Rejected by Alice Admin at 09:00 UTC: not during business hours"
    stored = world.approval(card)
    assert stored.state is ApprovalState.DENIED
    assert stored.decision_note == "not during business hours"
    assert stored.decided_by_user_id == world.user_id(ALICE)
    [denied] = world.audit("approval.denied")
    assert (denied.actor, denied.detail) == (ALICE, {"note": "not during business hours"})

    later = world.chat.run(f"approve {label}", as_=ERIN)
    assert later.text == f"{label} was already denied by Alice Admin at 2026-11-21 09:00 UTC"
    assert world.queue.enqueued == [] and world.proxmox_calls() == []
    entries = OutboxReader(world.storage.engine, world.chat.conversation.channel).poll()
    last = entries_of(entries, stored.message_ref["message_id"])[-1]
    assert last.actions == ()


@pytest.mark.parametrize(("change", "why"), [
    ("deleted in Proxmox", "VM db-01 no longer exists"),
    ("moved to another company's pool", "VM db-01 no longer exists"),
    ("requester deactivated", "the requester is no longer active"),
])
def test_the_world_changed_between_request_and_approval(world: World, change: str, why: str) -> None:
    card = world.chat.run("vm delete db-01 --reason cleanup", as_=BOB)
    label = apr(card)
    if change == "deleted in Proxmox":
        del world.lab.guests[102]
    elif change == "moved to another company's pool":
        world.lab.guests[102] = replace(world.lab.guests[102], pool="globex")
    else:
        bob = "{email: bob@acme.example, name: Bob User, role: user, company: acme,"
        assert bob in STANDARD_DOC
        provision(world.storage, STANDARD_DOC.replace(bob, bob + " active: false,"))

    answer = world.chat.run(f"approve {label}", as_=ALICE)

    assert answer.severity is Severity.ERROR
    assert answer.text == f"{label} cannot run: {why}. Nothing was done."
    assert world.queue.enqueued == [] and world.jobs() == []
    assert world.proxmox_calls() == []
    stored = world.approval(card)
    assert stored.state is ApprovalState.FAILED and stored.job_id is None
    [failed] = world.audit("approval.failed")
    assert (failed.actor, failed.detail) == (ALICE, {"note": why})
    again = world.chat.run(f"approve {label}", as_=ERIN)
    assert again.text == f"{label} was closed at 2026-11-21 09:00 UTC: {why}"
    # the card does not offer buttons that can no longer work
    entries = OutboxReader(world.storage.engine, world.chat.conversation.channel).poll()
    assert entries_of(entries, stored.message_ref["message_id"])[-1].actions == ()


# ---- the company's policy ----------------------------------------------------------------------

POLICY = (
    "    approval: {required_for: [vm.shutdown],\n"
    "               expires_minutes: 10, approvers_channel: \"shell:approvers\"}\n"
)


def with_acme_policy(policy: str) -> str:
    anchor = "    quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}\n"
    assert anchor in STANDARD_DOC
    return STANDARD_DOC.replace(anchor, anchor + policy)


def test_a_company_policy_adds_actions_sets_expiry_and_posts_to_the_approvers_channel(
    storage: Storage, clock: FakeClock
) -> None:
    world = make_world(storage, clock, with_acme_policy(POLICY))
    approvers = OutboxReader(storage.engine, "approvers")

    card = world.chat.run("vm shutdown web-01", as_=BOB)

    assert card.title == "Shut down web-01?"
    assert card.text.splitlines()[0] == "Pending · expires in 10 min, 09:10 UTC"
    assert world.queue.enqueued == []
    [posted] = approvers.poll()
    assert apr(posted.reply) == apr(card)
    assert posted.reply.title == card.title
    assert [a.command for a in posted.reply.actions] == [f"approve {apr(card)}", f"deny {apr(card)}"]
    # the approvers' copy: buttons anyone there may press, and no "waiting for an approver"
    assert all(a.only_for == () for a in posted.reply.actions) and "Waiting" not in posted.reply.text
    assert "Waiting for an approver: Alice Admin, Erin Admin, Root" in card.text
    assert fields(posted.reply) == fields(card)

    # globex keeps the default policy: a clean shutdown just runs
    queued = world.chat.ask("vm shutdown gx-01", as_=DAVE)
    assert approval_of(queued) is None and job_of(queued) is not None
    assert approvers.poll() == []

    world.chat.run(f"approve {apr(card)}", as_=ERIN)
    world.run_queue()
    assert sorted(world.proxmox_calls()) == [("qmshutdown", 101), ("qmshutdown", 201)]
    # the approvers channel's copy shows the decision too, and has lost its buttons
    edits = [e for e in approvers.poll() if e.message_id == posted.message_id]
    assert edits and edits[-1].reply.actions == ()
    assert "Approved by Erin Admin" in edits[-1].reply.text


def test_a_policy_cannot_exempt_vm_delete(storage: Storage) -> None:
    policy = "    approval: {exempt: [vm.stop, vm.delete]}\n"
    with pytest.raises(ConfigurationError, match="vm.delete always needs approval; it cannot be exempt"):
        provision(storage, with_acme_policy(policy))


def test_a_policy_adds_to_the_defaults_and_may_exempt_others(storage: Storage, clock: FakeClock) -> None:
    policy = "    approval: {required_for: [vm.reboot], exempt: [vm.stop]}\n"
    world = make_world(storage, clock, with_acme_policy(policy))
    assert approval_of(world.chat.ask("vm reboot web-01", as_=BOB)) is not None  # added
    assert job_of(world.chat.ask("vm stop web-01", as_=BOB)) is not None  # exempted: runs at once
    assert approval_of(world.chat.ask("vm reset web-01", as_=BOB)) is not None  # a default, kept
    assert approval_of(world.chat.ask("vm delete db-01", as_=BOB)) is not None  # always


def test_a_policy_names_only_known_actions(storage: Storage) -> None:
    policy = "    approval: {required_for: [vm.delete, vm.destroy-everything]}\n"
    with pytest.raises(ConfigurationError, match=r"required_for\[1\]: unknown action"):
        provision(storage, with_acme_policy(policy))
