"""A request acts on the guest it was made for, never on another that later took the same VMID.

Proxmox gives the lowest free VMID to the next guest created. These tests make a request stale the
way an operator would — deleting the guest and cloning a new one into its VMID, straight through the
Proxmox API as its own UI does — and show that neither the approval nor the queued job touches the
newcomer, that the user reads why, and that the audit trail keeps it. Everything goes through the
shell adapter to the simulator over HTTPS.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from core.model import GuestRef
from core.ports import Hypervisor
from core.principal import Scope
from pvesim.state import SimSnapshot
from tests.e2e.shell_world import World, job_ids, world
from tests.proxmox_support import wait_task

pytestmark = pytest.mark.slow

BOB, ALICE, ROOT = "bob@acme.example", "alice@acme.example", "root@host.example"


def _approval_ids(text: str) -> list[str]:
    return re.findall(r"apr-([a-z0-9]+)", text)


def _proxmox(w: World) -> Hypervisor:
    """The cluster as an operator reaches it outside pvebot: the API, as Proxmox's own UI uses it."""
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name("lab")
    assert cluster is not None
    return w.app.deps.hypervisors.for_cluster(cluster)


def _replace(w: World, *, vmid: int, kind: str, template: int, name: str) -> None:
    """Delete guest ``vmid`` and clone ``template`` into the freed VMID as ``name``, in acme's pool."""
    pve = _proxmox(w)
    old = GuestRef(cluster="lab", node="pve1", kind=kind, vmid=vmid)
    if w.sim.guest(vmid).status == "running":
        assert wait_task(pve, pve.power(old, "stop")).ok
    assert wait_task(pve, pve.delete(old)).ok
    tpl = GuestRef(cluster="lab", node="pve1", kind=kind, vmid=template)
    assert wait_task(pve, pve.clone(tpl, newid=vmid, name=name, pool="acme")).ok
    assert w.sim.guest(vmid).name == name


def _audit(w: World, action: str) -> list[str]:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        return [f"{e.target} {e.outcome} {e.detail}" for e in uow.audit.query(limit=500) if e.action == action]


def test_a_stale_delete_approval_is_refused_and_the_new_vm_survives(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        bob, out = w.shell(BOB)
        bob.run(["vm delete db-01 --reason decommission", "vm delete db-01"])
        first, second = _approval_ids(out.getvalue().split("vm delete db-01", 2)[1]), _approval_ids(
            out.getvalue().split("vm delete db-01", 2)[2])
        # asking again while the first is pending answers with the first request
        assert first[0] == second[0]
        assert f"already waiting for approval: apr-{first[0]}" in out.getvalue()

        pve = _proxmox(w)
        _replace(w, vmid=101, kind="qemu", template=9000, name="newdb")
        assert pve.next_vmid() == 103  # 101 was the lowest free VMID, and newdb took it

        root, root_out = w.shell(ROOT)
        root.run([f"approve apr-{first[0]}"])
        answer = root_out.getvalue()
        assert ("db-01 (lab/101) is not the VM this request was made for: it was deleted and VMID 101 now "
                "belongs to newdb") in answer
        assert "Nothing was done" in answer
        assert not job_ids(answer)
        assert w.sim.guest(101).name == "newdb"  # the newcomer survives
        failed = _audit(w, "approval.failed")
        assert any("now belongs to newdb" in line for line in failed), failed
        assert not [j for j in _jobs(w) if j.action == "vm.delete"]


def test_a_queued_stop_does_not_stop_the_vm_that_replaced_its_target(tmp_path: Path) -> None:
    # real Redis and a real worker process, started only after the VM was replaced under the queued job
    with world(tmp_path, queue="redis", start_worker=False) as w:
        bob, out = w.shell(BOB)
        bob.wait_seconds = 0
        bob.run(["vm stop web-01 --reason maintenance"])
        apr = _approval_ids(out.getvalue())[0]
        alice, alice_out = w.shell(ALICE)
        alice.wait_seconds = 0
        alice.run([f"approve apr-{apr}"])
        job = job_ids(alice_out.getvalue())[0]
        assert w.job_state(job) == "queued"

        _replace(w, vmid=100, kind="qemu", template=9000, name="web-02")
        pve = _proxmox(w)
        assert wait_task(pve, pve.power(GuestRef("lab", "pve1", "qemu", 100), "start")).ok

        w.start_worker()
        assert w.wait_state(job, {"failed", "succeeded"}, timeout=30) == "failed"
        assert w.sim.guest(100).status == "running"  # web-02 was never stopped
        result = _job(w, job).result
        assert "web-01 (lab/100) is not the VM this request was made for" in result
        assert "now belongs to web-02" in result
        refused = _audit(w, "job.refused")
        assert len(refused) == 1 and "now belongs to web-02" in refused[0]
        # nothing but reads reached the newcomer after its start
        stops = [r for r in w.sim.requests if r.method == "POST" and r.path.endswith("/100/status/stop")]
        assert len(stops) == 1  # the operator's own stop before deleting the old web-01


def test_a_container_replaced_under_a_pending_delete_is_not_deleted(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        bob, out = w.shell(BOB)
        bob.run(["vm delete ct-01"])
        apr = _approval_ids(out.getvalue())[0]
        _replace(w, vmid=200, kind="lxc", template=9001, name="ct-new")
        alice, alice_out = w.shell(ALICE)
        alice.run([f"approve apr-{apr}"])
        assert ("ct-01 (lab/200) is not the VM this request was made for: it was deleted and VMID 200 now "
                "belongs to ct-new") in alice_out.getvalue()
        assert w.sim.guest(200).name == "ct-new"
        assert not job_ids(alice_out.getvalue())
        failed = _audit(w, "approval.failed")
        assert any("now belongs to ct-new" in line for line in failed), failed
        deletes = [r for r in w.sim.requests if r.method == "DELETE" and r.path.endswith("/lxc/200")]
        assert len(deletes) == 1  # the operator's own, of the old ct-01


def test_a_rollback_to_a_snapshot_taken_again_under_its_name_is_refused(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded") as w:
        with w.sim.state.lock:  # a snapshot taken an hour ago
            guest = w.sim.state.guests[100]
            guest.snapshots["before"] = SimSnapshot(name="before", description="", snaptime=int(time.time()) - 3600,
                                                    parent=None, vmstate=False, config=dict(guest.config))
            guest.parent = "before"
        bob, out = w.shell(BOB)
        bob.run(["snapshot rollback web-01 before"])
        apr = _approval_ids(out.getvalue())[0]
        # someone deletes it and takes a new one under the same name
        pve = _proxmox(w)
        ref = GuestRef("lab", "pve1", "qemu", 100)
        assert wait_task(pve, pve.delete_snapshot(ref, "before")).ok
        assert wait_task(pve, pve.create_snapshot(ref, "before")).ok
        alice, alice_out = w.shell(ALICE)
        alice.run([f"approve apr-{apr}"])
        answer = alice_out.getvalue()
        assert "snapshot 'before' of web-01 (lab/100) is not the one this request was made for" in answer
        assert not job_ids(answer)
        assert not [r for r in w.sim.requests if r.path.endswith("/snapshot/before/rollback")]
        failed = _audit(w, "approval.failed")
        assert any("taken again under the same name" in line for line in failed), failed


def test_the_same_guest_reconfigured_is_still_the_same(tmp_path: Path) -> None:
    """Identity is not the config: cores and memory changed meanwhile do not stop an approved stop."""
    with world(tmp_path, queue="embedded") as w:
        bob, out = w.shell(BOB)
        bob.run(["vm stop web-01"])
        apr = _approval_ids(out.getvalue())[0]
        with w.sim.state.lock:
            w.sim.state.guests[100].config.update(cores="8", memory="8192")
        alice, alice_out = w.shell(ALICE)
        alice.run([f"approve apr-{apr}"])
        job = job_ids(alice_out.getvalue())[0]
        assert w.wait_state(job, {"failed", "succeeded"}) == "succeeded"
        assert w.sim.guest(100).status == "stopped"


def _jobs(w: World) -> list:  # type: ignore[type-arg]
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        return uow.jobs.list(limit=100)


def _job(w: World, job_id: str):  # type: ignore[no-untyped-def]
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        found = uow.jobs.get(job_id)
    assert found is not None
    return found
