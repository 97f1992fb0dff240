"""The Proxmox gateway against the simulator, over HTTPS through proxmoxer: every operation."""

from __future__ import annotations

import gc
import weakref

import pytest

from adapters.crypto import FernetCipher
from adapters.proxmox import ProxmoxHypervisor, ProxmoxHypervisors
from core.errors import Conflict, InvalidArguments, NotFound
from core.model import GuestRef, TlsMode
from core.ports import ConfigChange
from pvesim import PveSimulator, SimServer
from tests import proxmox_support
from tests.proxmox_support import make_cluster, wait_task

# fixtures from the support module (tests/conftest.py may import them too)
pve_sim = proxmox_support.pve_sim
pve_cipher = proxmox_support.pve_cipher
pve_hypervisors = proxmox_support.pve_hypervisors

WEB = GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=100)
DB = GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=101)
CT = GuestRef(cluster="lab", node="pve1", kind="lxc", vmid=200)
CT_STOPPED = GuestRef(cluster="lab", node="pve2", kind="lxc", vmid=201)
TEMPLATE = GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=9000)
CT_TEMPLATE = GuestRef(cluster="lab", node="pve1", kind="lxc", vmid=9001)


@pytest.fixture
def hv(
    pve_sim: tuple[PveSimulator, SimServer], pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher
) -> ProxmoxHypervisor:
    return pve_hypervisors.for_cluster(make_cluster(pve_sim[1], cipher=pve_cipher))


def calls(sim: PveSimulator, suffix: str) -> int:
    return sum(1 for r in sim.requests if r.path.endswith(suffix))


# -- inventory -------------------------------------------------------------------------------


def test_inventory_is_one_call_with_pools(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    sim, _ = pve_sim
    guests = {g.vmid: g for g in hv.inventory()}
    assert set(guests) == {100, 101, 102, 200, 201, 9000, 9001}
    web = guests[100]
    assert (web.name, web.kind, web.node, web.status, web.pool) == ("web-01", "qemu", "pve1", "running", "acme")
    assert web.tags == ("prod", "web") and web.maxcpu == 2 and web.maxmem == 2048 * 1024**2
    assert guests[201].pool == "globex" and guests[201].kind == "lxc"
    assert guests[9000].template and guests[9000].pool is None
    assert [r.path for r in sim.requests] == ["/api2/json/cluster/resources"]


def test_inventory_cache_and_explicit_refresh(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    sim, _ = pve_sim
    hv.inventory()
    hv.inventory()
    assert calls(sim, "/cluster/resources") == 1
    sim.add_guest(vmid=300, name="late", node="pve2", pool="acme")
    assert 300 not in {g.vmid for g in hv.inventory()}
    assert 300 in {g.vmid for g in hv.inventory(refresh=True)}
    assert calls(sim, "/cluster/resources") == 2


def test_inventory_cache_expires(
    pve_sim: tuple[PveSimulator, SimServer], pve_cipher: FernetCipher
) -> None:
    sim, server = pve_sim
    hvs = ProxmoxHypervisors(pve_cipher, cache_seconds=0)
    try:
        hv = hvs.for_cluster(make_cluster(server, cipher=pve_cipher))
        hv.inventory()
        hv.inventory()
        assert calls(sim, "/cluster/resources") == 2
    finally:
        hvs.close()


def test_for_cluster_returns_the_same_hypervisor(
    pve_sim: tuple[PveSimulator, SimServer], pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher
) -> None:
    cluster = make_cluster(pve_sim[1], cipher=pve_cipher)
    first = pve_hypervisors.for_cluster(cluster)
    assert pve_hypervisors.for_cluster(cluster) is first
    first.inventory()
    pve_hypervisors.for_cluster(cluster).inventory()
    assert calls(pve_sim[0], "/cluster/resources") == 1
    other = make_cluster(pve_sim[1], cipher=pve_cipher, name="lab2")
    assert pve_hypervisors.for_cluster(other) is not first


def test_changed_cluster_settings_replace_the_hypervisor_without_breaking_the_old_one(
    pve_sim: tuple[PveSimulator, SimServer], pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher
) -> None:
    sim, server = pve_sim
    old = pve_hypervisors.for_cluster(make_cluster(server, cipher=pve_cipher))
    old.inventory()
    sim.add_token("pvebot@pve!rotated", "new-secret")
    rotated = make_cluster(server, cipher=pve_cipher, token_id="pvebot@pve!rotated", secret="new-secret")
    new = pve_hypervisors.for_cluster(rotated)
    assert new is not old
    assert pve_hypervisors.for_cluster(rotated) is new
    # not closed under a job that may still be following a task through it ...
    assert old.status(WEB).guest.vmid == 100
    new.inventory()
    assert calls(sim, "/cluster/resources") == 2
    # ... and gone once that job lets it go: not kept beside the new one, its inventory and connections
    # with it, for as long as the process runs
    let_go = weakref.ref(old)
    del old
    gc.collect()
    assert let_go() is None


def test_offline_node_guests_show_unknown(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    pve_sim[0].faults.node_offline("pve2")
    guests = {g.vmid: g for g in hv.inventory()}
    assert guests[102].status == "unknown" and guests[102].pool == "globex"
    assert guests[100].status == "running"


# -- status ----------------------------------------------------------------------------------


def test_status_of_running_vm_has_agent_ips_and_config(hv: ProxmoxHypervisor) -> None:
    status = hv.status(WEB)
    assert status.guest.status == "running" and status.guest.pool == "acme"
    assert status.qmp_status == "running"
    assert status.ips == ("10.0.0.10",)
    assert status.config["cores"] == "2" and "digest" not in status.config
    assert status.pending == {}


def test_status_of_container_and_stopped_guest(hv: ProxmoxHypervisor) -> None:
    assert hv.status(CT).ips == ("10.0.0.20",)
    stopped = hv.status(CT_STOPPED)
    assert stopped.guest.status == "stopped" and stopped.ips == () and stopped.guest.pool == "globex"


def test_a_template_config_is_one_call_with_its_os_type(
    hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]
) -> None:
    sim, _ = pve_sim
    before = len(sim.requests)
    assert hv.guest_config(TEMPLATE)["ostype"] == "l26"
    assert hv.guest_config(CT_TEMPLATE)["ostype"] == "debian"
    assert [r.path for r in sim.requests[before:]] == [
        "/api2/json/nodes/pve1/qemu/9000/config", "/api2/json/nodes/pve1/lxc/9001/config"]
    with pytest.raises(NotFound):
        hv.guest_config(GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=555))


def test_status_of_missing_guest_is_not_found(hv: ProxmoxHypervisor) -> None:
    with pytest.raises(NotFound, match="guest 555 was not found on node pve1"):
        hv.status(GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=555))
    with pytest.raises(NotFound):
        hv.status(GuestRef(cluster="lab", node="pve2", kind="qemu", vmid=100))  # wrong node


# -- power -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", [DB, CT_STOPPED], ids=["qemu", "lxc"])
def test_power_cycle(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer], ref: GuestRef) -> None:
    sim, _ = pve_sim
    expected = {"start": "running", "suspend": "running", "resume": "running", "reboot": "running",
                "shutdown": "stopped"}
    for action in ("start", "suspend", "resume", "reboot", "shutdown", "start", "stop"):
        task = hv.power(ref, action)
        assert task.upid is not None and f":{('qm' if ref.kind == 'qemu' else 'vz')}{action}:{ref.vmid}:" in task.upid
        assert wait_task(hv, task).ok, action
        assert hv.status(ref).guest.status == expected.get(action, "stopped"), action
    if ref.kind == "qemu":
        hv.power(ref, "start")
        assert wait_task(hv, hv.power(ref, "reset")).ok


def test_suspend_pauses_a_vm(hv: ProxmoxHypervisor) -> None:
    assert wait_task(hv, hv.power(WEB, "suspend")).ok
    assert hv.status(WEB).qmp_status == "paused"
    assert wait_task(hv, hv.power(WEB, "resume")).ok
    assert hv.status(WEB).qmp_status == "running"


def test_containers_have_no_reset(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    with pytest.raises(InvalidArguments, match="no reset"):
        hv.power(CT, "reset")
    with pytest.raises(InvalidArguments, match="unknown power action"):
        hv.power(WEB, "explode")
    assert pve_sim[0].requests == []


def test_starting_a_running_vm_is_a_failed_task(hv: ProxmoxHypervisor) -> None:
    status = wait_task(hv, hv.power(WEB, "start"))
    assert not status.ok and status.exitstatus == "VM 100 already running"
    assert status.log_tail[-1] == "TASK ERROR: VM 100 already running"


# -- create, change, delete ------------------------------------------------------------------


def test_clone_template_into_pool_with_next_id(hv: ProxmoxHypervisor) -> None:
    newid = hv.next_vmid()
    assert newid == 103
    task = hv.clone(TEMPLATE, newid=newid, name="new-web", pool="acme")
    status = wait_task(hv, task)
    assert status.ok and status.percent == 100.0
    assert any("transferred" in line for line in status.log_tail)
    guest = {g.vmid: g for g in hv.inventory()}[newid]
    assert (guest.name, guest.pool, guest.status, guest.template, guest.lock) == ("new-web", "acme", "stopped",
                                                                                  False, None)
    assert hv.next_vmid() == 104


def test_clone_reports_percent_while_running(
    hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]
) -> None:
    pve_sim[0].task_seconds = 0.6
    task = hv.clone(TEMPLATE, newid=hv.next_vmid(), name="slow-clone", pool="acme")
    seen: set[float] = set()
    status = hv.task_status(task)
    while status.running:
        if status.percent is not None:
            seen.add(status.percent)
        status = hv.task_status(task)
    assert status.ok
    assert any(0 < p < 100 for p in seen), seen
    assert {g.vmid: g for g in hv.inventory(refresh=True)}[103].lock is None


def test_clone_container_template(hv: ProxmoxHypervisor) -> None:
    task = hv.clone(CT_TEMPLATE, newid=hv.next_vmid(), name="new-ct", pool="globex", full=False)
    assert wait_task(hv, task).ok
    guest = {g.vmid: g for g in hv.inventory()}[103]
    assert (guest.kind, guest.name, guest.pool) == ("lxc", "new-ct", "globex")


def test_clone_into_missing_pool_or_used_id(hv: ProxmoxHypervisor) -> None:
    with pytest.raises(NotFound, match="pool 'nope' does not exist"):
        hv.clone(TEMPLATE, newid=150, name="x", pool="nope")
    with pytest.raises(Conflict, match="VMID is already used"):
        hv.clone(TEMPLATE, newid=101, name="x", pool="acme")


def test_failed_clone_leaves_nothing(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    pve_sim[0].faults.fail_next_task(message="storage 'local-lvm' is full")
    status = wait_task(hv, hv.clone(TEMPLATE, newid=150, name="x", pool="acme"))
    assert status.exitstatus == "storage 'local-lvm' is full"
    assert 150 not in {g.vmid for g in hv.inventory(refresh=True)}


def test_configure_vm_cores_memory_vlan_ipconfig(hv: ProxmoxHypervisor) -> None:
    task = hv.configure(WEB, ConfigChange(cores=4, memory_mb=4096, vlan=(0, 20), ipconfig=(0, "ip=10.0.0.11/24")))
    assert task.upid is not None and wait_task(hv, task).ok
    status = hv.status(WEB)
    # a running VM keeps cores and memory pending until it restarts
    assert status.pending == {"cores": "4", "memory": "4096"}
    assert status.config["net0"].endswith("bridge=vmbr0,firewall=1,tag=20")
    assert status.config["ipconfig0"] == "ip=10.0.0.11/24"
    assert wait_task(hv, hv.configure(WEB, ConfigChange(vlan=(0, None)))).ok
    assert "tag=" not in hv.status(WEB).config["net0"]


def test_configure_stopped_vm_applies_at_once(hv: ProxmoxHypervisor) -> None:
    assert wait_task(hv, hv.configure(DB, ConfigChange(cores=8))).ok
    status = hv.status(DB)
    assert status.config["cores"] == "8" and status.pending == {}


def test_configure_container_is_synchronous(hv: ProxmoxHypervisor) -> None:
    task = hv.configure(CT, ConfigChange(memory_mb=1024, vlan=(0, 30), ipconfig=(0, "ip=10.0.0.21/24,gw=10.0.0.254")))
    assert task.upid is None and hv.task_status(task).ok
    net0 = hv.status(CT).config["net0"]
    assert "tag=30" in net0 and "ip=10.0.0.21/24" in net0 and "gw=10.0.0.254" in net0
    assert hv.status(CT).config["memory"] == "1024"


def test_configure_refuses_bad_input(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    with pytest.raises(InvalidArguments, match="nothing to change"):
        hv.configure(WEB, ConfigChange())
    with pytest.raises(InvalidArguments, match="between 1 and 4094"):
        hv.configure(WEB, ConfigChange(vlan=(0, 5000)))
    with pytest.raises(InvalidArguments, match="no network interface net3"):
        hv.configure(WEB, ConfigChange(vlan=(3, 10)))
    with pytest.raises(InvalidArguments, match="IP setting"):
        hv.configure(WEB, ConfigChange(ipconfig=(0, "address=1.2.3.4")))
    # what only Proxmox knows: cores must be at least 1
    with pytest.raises(InvalidArguments, match="cores: value must have a minimum value of 1"):
        hv.configure(WEB, ConfigChange(cores=0))


def test_resize_disk(hv: ProxmoxHypervisor) -> None:
    assert wait_task(hv, hv.resize_disk(WEB, disk="scsi0", size="+8G")).ok
    assert "size=40G" in hv.status(WEB).config["scsi0"]
    assert wait_task(hv, hv.resize_disk(CT, disk="rootfs", size="16G")).ok
    assert "size=16G" in hv.status(CT).config["rootfs"]
    with pytest.raises(InvalidArguments, match="only grow"):
        hv.resize_disk(WEB, disk="scsi0", size="10G")
    with pytest.raises(InvalidArguments, match="disk size looks like"):
        hv.resize_disk(WEB, disk="scsi0", size="ten gigs")


def test_delete_with_purge(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    assert wait_task(hv, hv.delete(DB)).ok
    assert 101 not in {g.vmid for g in hv.inventory()}
    delete = [r for r in pve_sim[0].requests if r.method == "DELETE"]
    assert [r.path for r in delete] == ["/api2/json/nodes/pve1/qemu/101"]


def test_delete_running_guest_is_a_conflict(hv: ProxmoxHypervisor) -> None:
    with pytest.raises(Conflict, match="guest 100 is running; stop it before deleting it"):
        hv.delete(WEB)
    with pytest.raises(Conflict, match="guest 200 is running"):
        hv.delete(CT)


# -- snapshots -------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", [WEB, CT], ids=["qemu", "lxc"])
def test_snapshot_lifecycle(hv: ProxmoxHypervisor, ref: GuestRef) -> None:
    assert hv.snapshots(ref) == []
    assert wait_task(hv, hv.create_snapshot(ref, "before-upgrade", description="pre 12.5")).ok
    assert wait_task(hv, hv.create_snapshot(ref, "after")).ok
    snaps = hv.snapshots(ref)
    assert [s.name for s in snaps] == ["before-upgrade", "after"]
    assert snaps[0].description == "pre 12.5" and snaps[1].parent == "before-upgrade"
    assert wait_task(hv, hv.rollback_snapshot(ref, "before-upgrade")).ok
    assert hv.status(ref).guest.status == "stopped"  # rollback without RAM state stops the guest
    assert wait_task(hv, hv.delete_snapshot(ref, "after")).ok
    assert [s.name for s in hv.snapshots(ref)] == ["before-upgrade"]


def test_snapshot_with_ram_state(hv: ProxmoxHypervisor) -> None:
    assert wait_task(hv, hv.create_snapshot(WEB, "live", vmstate=True)).ok
    assert hv.snapshots(WEB)[0].vmstate
    with pytest.raises(InvalidArguments, match="cannot keep their RAM"):
        hv.create_snapshot(CT, "live", vmstate=True)


def test_snapshot_errors(hv: ProxmoxHypervisor) -> None:
    with pytest.raises(InvalidArguments, match="snapshot name"):
        hv.create_snapshot(WEB, "1-bad name")
    with pytest.raises(NotFound, match="snapshot 'ghost' does not exist"):
        hv.rollback_snapshot(WEB, "ghost")
    with pytest.raises(NotFound):
        hv.delete_snapshot(WEB, "ghost")
    assert wait_task(hv, hv.create_snapshot(WEB, "once")).ok
    with pytest.raises(Conflict, match="snapshot 'once' already exists"):
        hv.create_snapshot(WEB, "once")


# -- backups ---------------------------------------------------------------------------------


def test_backup_list_and_restore_vm(hv: ProxmoxHypervisor) -> None:
    status = wait_task(hv, hv.backup(DB, storage="local", mode="snapshot"))
    assert status.ok and status.percent == 100.0
    assert any(line.startswith("INFO: ") for line in status.log_tail)
    backups = hv.backups(node="pve1", storage="local", vmid=101)
    assert len(backups) == 1
    backup = backups[0]
    assert backup.volid.startswith("local:backup/vzdump-qemu-101-") and backup.format == "vma.zst"
    assert backup.vmid == 101 and backup.size > 0 and backup.notes == "db-01"
    assert hv.backups(node="pve1", storage="local", vmid=100) == []
    with pytest.raises(Conflict, match="already exists"):
        hv.restore(node="pve1", kind="qemu", vmid=101, archive=backup.volid)
    assert wait_task(hv, hv.restore(node="pve1", kind="qemu", vmid=101, archive=backup.volid, force=True)).ok
    restore_new = hv.restore(node="pve1", kind="qemu", vmid=150, archive=backup.volid, storage="local-lvm")
    assert wait_task(hv, restore_new).ok
    assert {g.vmid: g for g in hv.inventory()}[150].name == "db-01"


def test_backup_storages_are_those_holding_backups(hv: ProxmoxHypervisor,
                                                   pve_sim: tuple[PveSimulator, SimServer]) -> None:
    sim, _ = pve_sim
    before = calls(sim, "/cluster/resources")
    assert hv.backup_storages("pve1") == ["local"]  # local-lvm holds images only
    assert calls(sim, "/cluster/resources") == before + 1


def test_backup_and_restore_container(hv: ProxmoxHypervisor) -> None:
    assert wait_task(hv, hv.backup(CT, storage="local")).ok
    backup = hv.backups(node="pve1", storage="local")[0]
    assert backup.format == "tar.zst"
    with pytest.raises(Conflict, match="is running"):
        hv.restore(node="pve1", kind="lxc", vmid=200, archive=backup.volid, force=True)
    assert wait_task(hv, hv.restore(node="pve1", kind="lxc", vmid=250, archive=backup.volid)).ok
    assert {g.vmid: g for g in hv.inventory()}[250].kind == "lxc"


def test_backup_errors(hv: ProxmoxHypervisor) -> None:
    # vzdump's OK without a task is no success: nothing was backed up
    with pytest.raises(Conflict, match="guest 100 is not on node pve2; nothing was backed up"):
        hv.backup(GuestRef(cluster="lab", node="pve2", kind="qemu", vmid=100), storage="local")
    with pytest.raises(InvalidArguments, match="backup mode"):
        hv.backup(WEB, storage="local", mode="fast")
    with pytest.raises(NotFound, match="storage 'tape' does not exist"):
        hv.backups(node="pve1", storage="tape")
    with pytest.raises(NotFound, match="does not exist"):
        hv.restore(node="pve1", kind="qemu", vmid=150, archive="local:backup/vzdump-qemu-1-x.vma.zst")


# -- tasks -----------------------------------------------------------------------------------


def test_failed_task_reports_its_error(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    pve_sim[0].faults.fail_next_task(vmid=101, message="start failed: QEMU exited with code 1")
    status = wait_task(hv, hv.power(DB, "start"))
    assert not status.ok and status.exitstatus == "start failed: QEMU exited with code 1"
    assert status.log_tail[-1] == "TASK ERROR: start failed: QEMU exited with code 1"
    assert hv.status(DB).guest.status == "stopped"


def test_cancel_task(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    pve_sim[0].task_seconds = 5
    task = hv.backup(WEB, storage="local")
    assert hv.task_status(task).running
    hv.cancel_task(task)
    status = wait_task(hv, task, timeout=2)
    assert status.exitstatus == "interrupted by signal"
    hv.cancel_task(hv.configure(CT, ConfigChange(cores=2)))  # nothing to cancel: no error


def test_long_task_log_is_read_incrementally(hv: ProxmoxHypervisor, pve_sim: tuple[PveSimulator, SimServer]) -> None:
    sim, _ = pve_sim
    task = hv.backup(WEB, storage="local")
    status = wait_task(hv, task)
    assert status.ok and len(status.log_tail) == 5
    starts = [r for r in sim.requests if r.path.endswith("/log")]
    assert len(starts) >= 2  # polled several times, each reading from where it stopped


def test_unknown_task_is_not_found(hv: ProxmoxHypervisor) -> None:
    from core.model import TaskRef

    ghost = TaskRef(cluster="lab", node="pve1", upid="UPID:pve1:00001234:00ABCDEF:65F0A1B2:qmstart:100:root@pam:")
    with pytest.raises(NotFound, match="task is unknown"):
        hv.task_status(ghost)


def test_ca_file_mode(
    pve_sim: tuple[PveSimulator, SimServer], pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher
) -> None:
    cluster = make_cluster(pve_sim[1], cipher=pve_cipher, tls_mode=TlsMode.CA_FILE)
    assert len(pve_hypervisors.for_cluster(cluster).inventory()) == 7


def test_a_clone_is_a_new_guest_and_a_reconfigured_one_is_not(
    pve_sim: tuple[PveSimulator, SimServer], pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher
) -> None:
    """The simulator writes identity as qemu-server and pct do, and the gateway reads it back."""
    sim, server = pve_sim
    hv = pve_hypervisors.for_cluster(make_cluster(server, cipher=pve_cipher))
    for kind, template in (("qemu", 9000), ("lxc", 9001)):
        tpl = GuestRef(cluster="lab", node="pve1", kind=kind, vmid=template)
        first = GuestRef(cluster="lab", node="pve1", kind=kind, vmid=500 + template % 2)
        assert wait_task(hv, hv.clone(tpl, newid=first.vmid, name=f"{kind}-a", pool="acme")).ok
        before = hv.identity(first)
        assert before.strong and not before.same_guest(hv.identity(tpl))
        assert wait_task(hv, hv.configure(first, ConfigChange(cores=4))).ok
        assert hv.identity(first).same_guest(before)
        assert wait_task(hv, hv.delete(first)).ok
        assert wait_task(hv, hv.clone(tpl, newid=first.vmid, name=f"{kind}-a", pool="acme")).ok
        assert not hv.identity(first).same_guest(before)
