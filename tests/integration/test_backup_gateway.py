"""The gateway's backup calls against the simulator over HTTPS, and the simulator behaving like Proxmox.

vzdump on one node only, protection and notes, deletion refused for a protected backup inside the
imgdel task, restore over a running guest (qemu: the task fails; lxc: refused at once), cluster
backup jobs, schedule-analyze, scheduled runs as root@pam with an empty id for several guests,
retention that skips protected backups, and the task history (whose vmid filter misses such runs).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import requests

from adapters.crypto import FernetCipher
from adapters.proxmox import ProxmoxHypervisor, ProxmoxHypervisors
from core.errors import Conflict, InvalidArguments, NotFound, PermissionDenied
from core.model import GuestRef
from core.services.backups import read_backups
from pvesim import PveSimulator, SimServer
from pvesim.api_backup import prune_marks
from pvesim.state import SimBackup
from tests import proxmox_support
from tests.proxmox_support import TOKEN_ID, TOKEN_SECRET, make_cluster, wait_task

pve_sim = proxmox_support.pve_sim
pve_cipher = proxmox_support.pve_cipher
pve_hypervisors = proxmox_support.pve_hypervisors

WEB = GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=100)
DB = GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=101)
CT = GuestRef(cluster="lab", node="pve1", kind="lxc", vmid=200)
Sim = tuple[PveSimulator, SimServer]


@pytest.fixture
def hv(pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher) -> ProxmoxHypervisor:
    return pve_hypervisors.for_cluster(make_cluster(pve_sim[1], cipher=pve_cipher))


def _wait_all(sim: PveSimulator, upids: list[str]) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with sim.state.lock:
            if all(not sim.tasks.tasks[u].running for u in upids):
                return
        time.sleep(0.02)
    raise AssertionError("tasks did not finish")


def test_backup_with_notes_and_protection_then_delete_is_refused(hv: ProxmoxHypervisor) -> None:
    assert wait_task(hv, hv.backup(DB, storage="local", notes="before\nupgrade", protected=True)).ok
    [backup] = hv.backups(node="pve1", storage="local", vmid=101)
    assert backup.protected and backup.notes == "before\\nupgrade" and backup.kind == "qemu"
    status = wait_task(hv, hv.delete_backup(node="pve1", storage="local", volid=backup.volid))
    assert not status.ok and status.exitstatus is not None
    assert status.exitstatus.startswith("cannot remove protected volume 'backup/vzdump-qemu-101-")
    hv.set_backup_protected(node="pve1", storage="local", volid=backup.volid, protected=False)
    assert wait_task(hv, hv.delete_backup(node="pve1", storage="local", volid=backup.volid)).ok
    assert hv.backups(node="pve1", storage="local", vmid=101) == []
    with pytest.raises(NotFound, match="does not exist"):
        hv.set_backup_protected(node="pve1", storage="local", volid=backup.volid, protected=True)


def test_restore_over_a_running_guest(hv: ProxmoxHypervisor) -> None:
    assert wait_task(hv, hv.backup(WEB, storage="local")).ok
    assert wait_task(hv, hv.backup(CT, storage="local")).ok
    web = hv.backups(node="pve1", storage="local", vmid=100)[0]
    ct = hv.backups(node="pve1", storage="local", vmid=200)[0]
    # qemu-server checks inside the task: a UPID, then the task fails
    status = wait_task(hv, hv.restore(node="pve1", kind="qemu", vmid=100, archive=web.volid, force=True))
    assert status.exitstatus == "unable to restore VM 100 - vm is running"
    # pct refuses at once
    with pytest.raises(Conflict, match="stop it before restoring"):
        hv.restore(node="pve1", kind="lxc", vmid=200, archive=ct.volid, force=True)
    # as a new guest: a new VMID, a name, the pool, new MACs
    task = hv.restore(node="pve1", kind="qemu", vmid=160, archive=web.volid, pool="acme", unique=True, name="copy")
    assert wait_task(hv, task).ok
    new = {g.vmid: g for g in hv.inventory(refresh=True)}[160]
    assert new.name == "copy" and new.pool == "acme"


def test_backup_jobs_and_schedules(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    assert hv.analyze_schedule("mon..fri 22:30", iterations=3)[0] > time.time()
    with pytest.raises(InvalidArguments, match="invalid calendar event 'fortnightly'"):
        hv.analyze_schedule("fortnightly")
    options = {"vmid": "100,101", "storage": "local", "mode": "snapshot", "prune-backups": "keep-last=2",
               "notification-mode": "notification-system"}
    hv.save_backup_job("pvebot-acme-nightly", schedule="02:00", options=options, create=True)
    with pytest.raises(Conflict, match="exists already"):
        hv.save_backup_job("pvebot-acme-nightly", schedule="02:00", options=options, create=True)
    [job] = hv.backup_jobs()
    assert job.id == "pvebot-acme-nightly" and job.schedule == "02:00" and job.vmids == (100, 101)
    assert job.options["prune-backups"] == "keep-last=2" and job.next_run is not None and job.enabled
    hv.save_backup_job(job.id, schedule="sat 03:00", options={"pool": "acme"}, create=False, delete=["vmid"])
    [job] = hv.backup_jobs()
    assert job.schedule == "sat 03:00" and job.options["pool"] == "acme" and "vmid" not in job.options
    hv.delete_backup_job(job.id)
    assert hv.backup_jobs() == []
    with pytest.raises(NotFound):
        hv.delete_backup_job(job.id)


def test_backup_jobs_need_sys_modify(pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors,
                                     pve_cipher: FernetCipher) -> None:
    sim, server = pve_sim
    sim.add_token("ops@pve!audit", "pw", privileges={"Sys.Audit", "VM.Audit"})
    hv = pve_hypervisors.for_cluster(make_cluster(server, cipher=pve_cipher, token_id="ops@pve!audit",
                                                  secret="pw"))
    assert hv.backup_jobs() == []
    with pytest.raises(PermissionDenied, match="lacks the Proxmox privilege Sys.Modify on /"):
        hv.save_backup_job("pvebot-acme-x", schedule="02:00", options={"all": "1"}, create=True)


def test_a_scheduled_run_is_root_at_pam_per_node_and_prunes_around_protected(hv: ProxmoxHypervisor,
                                                                             pve_sim: Sim) -> None:
    sim, _ = pve_sim
    # an old protected backup of 101 and three older ones: keep-last=2 keeps the two newest, never the protected
    with sim.state.lock:
        for age, protected in ((500, True), (400, False), (300, False), (200, False)):
            ctime = int(time.time()) - age
            volid = f"local:backup/vzdump-qemu-101-{ctime}.vma.zst"
            sim.state.backups[volid] = SimBackup(volid=volid, storage="local", node="pve1", vmid=101, kind="qemu",
                                                 ctime=ctime, size=1, notes="", config={}, name="db-01",
                                                 protected=protected)
    hv.save_backup_job("pvebot-acme-nightly", schedule="02:00", create=True,
                       options={"vmid": "100,101,102", "storage": "local", "prune-backups": "keep-last=2"})
    sim.backup_outcome(100, ("warning", "EFI vars are not backed up"))
    upids = sim.run_backup_job("pvebot-acme-nightly")
    # one task per node with guests of the job: pve1 has two (empty id), pve2 one (its VMID)
    fields = sorted(u.split(":")[1:] for u in upids)
    assert [(f[0], f[4], f[5]) for f in fields] == [("pve1", "vzdump", ""), ("pve2", "vzdump", "102")]
    assert all(f[6] == "root@pam" for f in fields)
    _wait_all(sim, upids)
    kept = sorted((b.ctime, b.protected) for b in hv.backups(node="pve1", storage="local", vmid=101))
    assert len(kept) == 3 and kept[0][1]  # the protected one, then the two newest
    history = hv.tasks(node="pve1", typefilter="vzdump")
    assert history[0].status == "WARNINGS: 1" and history[0].id == "" and history[0].user == "root@pam"
    log = hv.task_log(node="pve1", upid=history[0].upid)
    assert "INFO: Starting Backup of VM 100 (qemu)" in log and "WARN: EFI vars are not backed up" in log
    assert log[-1] == "TASK WARNINGS: 1"
    # the vmid filter matches only the task id: a multi-guest run is never found this way
    session = requests.Session()
    session.trust_env = False
    answer: Any = session.get(f"{sim.server.url}/api2/json/nodes/pve1/tasks", params={"vmid": 100},  # type: ignore
                              headers={"Authorization": f"PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"},
                              verify=sim.server.ca_file).json()  # type: ignore[union-attr]
    assert answer["data"] == [] and answer["total"] == 0


def test_a_failed_guest_makes_job_errors(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    sim, _ = pve_sim
    sim.backup_outcome(101, ("error", "no space left on device"))
    task = hv.run_backup(node="pve1", options={"vmid": "100,101", "storage": "local"})
    assert task is not None
    status = wait_task(hv, task)
    assert status.exitstatus == "job errors"
    log = hv.task_log(node="pve1", upid=task.upid or "")
    assert "ERROR: Backup of VM 101 failed - no space left on device" in log
    assert hv.run_backup(node="pve2", options={"vmid": "100", "storage": "local"}) is None  # OK, no task


def test_prune_marks_follow_the_retention_order() -> None:
    day = 86400
    backups = [SimBackup(volid=f"b{i}", storage="s", node="n", vmid=1, kind="qemu", ctime=1_700_000_000 + i * day,
                         size=1, notes="", config={}, name="x", protected=i == 9) for i in range(10)]
    marks = prune_marks(backups, {"keep-last": 2, "keep-daily": 3})
    assert marks["b9"] == "protected"  # neither kept by nor counted against the retention
    assert [v for v, m in sorted(marks.items()) if m == "keep"] == ["b4", "b5", "b6", "b7", "b8"]


def test_a_shared_storage_is_read_once_and_a_local_one_on_each_node(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    sim, _ = pve_sim
    sim.add_storage("backup-nfs", content="backup", shared=True)
    assert wait_task(hv, hv.backup(WEB, storage="backup-nfs")).ok
    assert wait_task(hv, hv.backup(DB, storage="local")).ok
    app = GuestRef(cluster="lab", node="pve2", kind="qemu", vmid=102)
    assert wait_task(hv, hv.backup(app, storage="local")).ok
    before = len(sim.requests)
    found = read_backups(hv)
    content = Counter(tuple(r.path.split("/")[4:7:2]) for r in sim.requests[before:] if r.path.endswith("/content"))
    # pve1 and pve2 both list backup-nfs: read on one of them only; "local" is each node's own disk
    assert sum(n for (node, storage), n in content.items() if storage == "backup-nfs") == 1
    assert (content[("pve1", "local")], content[("pve2", "local")]) == (1, 1)
    assert sum(content.values()) == 3
    assert sorted((b.vmid, b.storage) for b in found) == [(100, "backup-nfs"), (101, "local"), (102, "local")]
    # one VM's backups cost the same calls (by storage and node, never by VM), the vmid filter applied by Proxmox
    before = len(sim.requests)
    assert [b.vmid for b in read_backups(hv, vmid=102)] == [102]
    assert sum(1 for r in sim.requests[before:] if r.path.endswith("/content")) == 3


def test_destroying_a_guest_with_purge_takes_it_out_of_backup_jobs(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    sim, _ = pve_sim
    with sim.state.lock:
        sim.state.backup_jobs.update({
            "pvebot-acme-nightly": {"schedule": "02:00", "vmid": "101,200", "storage": "local"},
            "pvebot-acme-db": {"schedule": "03:00", "vmid": "101", "storage": "local"},
            "operator": {"schedule": "sat 04:00", "all": "1", "exclude": "101", "storage": "local"},
            "operator-ct": {"schedule": "sun 04:00", "all": "1", "exclude": "101,201", "storage": "local"},
        })
    # as qemu-server's destroy with purge: remove_vmid_from_backup_jobs, which drops a job left with no VMID
    assert wait_task(hv, hv.delete(DB)).ok
    with sim.state.lock:
        jobs = {k: dict(v) for k, v in sim.state.backup_jobs.items()}
    assert set(jobs) == {"pvebot-acme-nightly", "operator", "operator-ct"}
    assert jobs["pvebot-acme-nightly"]["vmid"] == "200"
    assert "exclude" not in jobs["operator"] and jobs["operator-ct"]["exclude"] == "201"
