"""Network from chat, end to end: the shell adapter, the job runner and the simulator over HTTPS.

Bob assigns addresses to a VM and a container and creates a VM on a range; Alice releases one
with Root's approval, audits after someone changed a VLAN tag behind pvebot's back, and a delete
gives its VM's address back once it succeeded. Globex never sees Acme's range.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from rq.job import Job, JobStatus

from adapters.queue import EmbeddedQueue, rq_job_id
from core.principal import Scope
from pvesim import SimServer
from pvesim.propstring import parse_property_string
from tests.e2e.shell_world import World, job_ids, world, world_doc

pytestmark = pytest.mark.slow

BOB, ALICE, ROOT, DAVE = "bob@acme.example", "alice@acme.example", "root@host.example", "dave@globex.example"
ACME_NET = ("networks: [{name: acme-prod, cluster: lab, cidr: 10.20.0.0/24, gateway: 10.20.0.1, vlan: 120, "
            "bridge: vmbr0, dns: [10.20.0.2], search_domain: acme.example, reserved: ['10.20.0.1-10.20.0.10']}]")
GLOBEX_NET = ("networks: [{name: gx-prod, cluster: lab, cidr: 10.30.0.0/24, gateway: 10.30.0.1, vlan: 130, "
              "bridge: vmbr0}]")


def network_doc(server: SimServer) -> str:
    doc = world_doc(server)
    doc = doc.replace("quotas: {vms: 10}}", f"quotas: {{vms: 10}}, {ACME_NET}}}", 1)
    return doc.replace("pools: [{cluster: lab, pool: globex}]}", f"pools: [{{cluster: lab, pool: globex}}], "
                                                                   f"{GLOBEX_NET}}}", 1)


def _net(w: World, vmid: int) -> dict[str, str]:
    default = "model" if w.sim.guest(vmid).kind == "qemu" else None
    return parse_property_string(w.sim.guest(vmid).config["net0"], default_key=default)


def _assigned(w: World) -> dict[str, int | None]:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        return {a.address: a.vmid for a in uow.ip_assignments.for_company()}


def _run(w: World, email: str, *lines: str) -> str:
    session, out = w.shell(email)
    session.run(list(lines))
    return out.getvalue()


def _settles(condition: Callable[[], bool], timeout: float = 10) -> None:
    """The end hook runs right after a job is marked settled: give it that moment."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the job's end hook did not run"
        time.sleep(0.02)


def _ran_to_its_end(w: World, job_id: str) -> None:
    """The job's function returned in its worker: settling it and its end hook are behind it."""
    queue = w.app.queue
    assert isinstance(queue, EmbeddedQueue)
    _settles(lambda: Job.fetch(rq_job_id(job_id), connection=queue.connection).get_status()
             in (JobStatus.FINISHED, JobStatus.FAILED))


def _result(w: World, job_id: str) -> str:
    with w.app.deps.uow_factory(Scope.everything()) as uow:
        job = uow.jobs.get(job_id)
        assert job is not None
        return job.result


def _approval(text: str) -> str:
    return re.findall(r"apr-([a-z0-9]+)", text)[-1]


def test_assign_create_release_audit_and_delete_through_the_shell(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded", doc=network_doc) as w:
        mac = _net(w, 100)["virtio"]
        said = _run(w, BOB, "ip assign web-01")
        assert "reboot it afterwards to take 10.20.0.11" in said  # web-01 runs: cloud-init applies it at boot
        assert w.wait_state(job_ids(said)[0], {"succeeded", "failed"}) == "succeeded"
        web = w.sim.guest(100)
        assert web.config["ipconfig0"] == "ip=10.20.0.11/24,gw=10.20.0.1"
        assert (web.config["nameserver"], web.config["searchdomain"]) == ("10.20.0.2", "acme.example")
        assert _net(w, 100) | {} == {"virtio": mac, "bridge": "vmbr0", "firewall": "1", "tag": "120"}
        assert web.cloudinit is not None and web.cloudinit["ipconfig0"] == "ip=10.20.0.11/24,gw=10.20.0.1"

        ct_mac = _net(w, 200)["hwaddr"]
        [job] = job_ids(_run(w, BOB, "ip assign ct-01 --ip 10.20.0.50"))
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        assert _result(w, job).endswith("no reboot needed")  # pct changes a running container's NIC live
        assert {k: _net(w, 200)[k] for k in ("ip", "gw", "tag", "hwaddr")} == {
            "ip": "10.20.0.50/24", "gw": "10.20.0.1", "tag": "120", "hwaddr": ct_mac}

        listing = _run(w, BOB, "net list", "net show acme-prod", "vlan list")
        assert _run(w, BOB, "net show 10.20.0.0/24").count("10.20.0.50") == 1  # a range is named by its network too
        assert "acme-prod" in listing and "10.20.0.50" in listing and "gx-prod" not in listing
        assert re.search(r"acme-prod .*\b2 +242\b", listing), listing  # 254 hosts, 10 reserved, 2 used
        # Globex cannot see or use Acme's range: it answers like one that does not exist
        nosy = _run(w, DAVE, "net show acme-prod", "net show nosuch", "ip assign app-02 --range acme-prod",
                    "net show 10.20.0.0/24", "ip assign app-02 --range 10.20.0.0/24")
        assert "range 'acme-prod' not found" in nosy and "range 'nosuch' not found" in nosy
        assert "range '10.20.0.0/24' not found" in nosy and "range '10.20.0.0/24' not found on the VM's cluster" in nosy
        assert "10.20" not in nosy.replace("acme-prod", "").replace("10.20.0.0/24", "")  # what Dave typed

        [job] = job_ids(_run(w, BOB, "vm create app-03 --template tmpl-deb --net acme-prod"))
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        assert _result(w, job).endswith("with 10.20.0.12/24 on net0")
        _settles(lambda: _assigned(w).get("10.20.0.12") is not None)
        app = next(g for g in w.sim.state.guests.values() if g.name == "app-03")
        assert app.config["ipconfig0"] == "ip=10.20.0.12/24,gw=10.20.0.1" and _net(w, app.vmid)["tag"] == "120"
        assert _assigned(w)["10.20.0.12"] == app.vmid

        # releasing needs a second person: Alice asks, Root approves
        asked = _run(w, ALICE, "ip release web-01 --reason renumbering")
        assert "Pending · expires in" in asked and "10.20.0.11" in asked
        assert "10.20.0.11" in _assigned(w)  # nothing is freed before the approval ran
        [job] = job_ids(_run(w, ROOT, f"approve apr-{_approval(asked)}"))
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        assert "ipconfig0" not in w.sim.guest(100).config
        _settles(lambda: "10.20.0.11" not in _assigned(w))

        # someone retags the container behind pvebot's back
        with w.sim.state.lock:
            ct = w.sim.guest(200)
            ct.config["net0"] = ct.config["net0"].replace("tag=120", "tag=999")
        audit = _run(w, ALICE, "net audit")
        assert "VLAN tag 999 differs from range acme-prod's 120" in audit
        assert "app-02" not in audit and "ct-02" not in audit  # Globex's VMs are not Acme's business

        # a delete frees the address only once it succeeded: a failed one keeps it
        w.sim.faults.fail_next_task(vmid=app.vmid, message="can't lock file '/var/lock/qemu-server/lock.conf'")
        asked = _run(w, BOB, "vm delete app-03")
        [job] = job_ids(_run(w, ALICE, f"approve apr-{_approval(asked)}"))
        assert w.wait_state(job, {"succeeded", "failed"}) == "failed"
        _ran_to_its_end(w, job)  # its end hook, which would have released it wrongly, has run
        assert _assigned(w)["10.20.0.12"] == app.vmid
        asked = _run(w, BOB, "vm delete app-03")
        assert "10.20.0.12" in _assigned(w)
        [job] = job_ids(_run(w, ALICE, f"approve apr-{_approval(asked)}"))
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        assert app.vmid not in w.sim.state.guests
        _settles(lambda: "10.20.0.12" not in _assigned(w))



def test_bad_network_requests_get_one_clear_line_each_and_change_nothing(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded", doc=network_doc) as w:
        [job] = job_ids(_run(w, BOB, "ip assign web-01"))
        assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        before = (_assigned(w), dict(w.sim.guest(100).config), dict(w.sim.guest(200).config))
        asked = {
            "ip assign web-01": "web-01 (lab/100) net0 has 10.20.0.11 from pvebot already; release it first",
            "ip assign ct-01 --ip 10.20.0.11": "10.20.0.11 is assigned already; leave out --ip",
            "ip assign ct-01 --ip 10.20.0.5": "10.20.0.5 is not one range acme-prod hands out",
            "ip assign ct-01 --ip 10.20.0.255": "10.20.0.255 is not one range acme-prod hands out",
            "ip assign ct-01 --ip 10.99.0.5": "10.99.0.5 is in none of your company's ranges on the VM's cluster",
            "ip assign ct-01 --ip 10.20.0.300": "'10.20.0.300' is not an IPv4 address",
            "ip assign ct-01 --nic net99": "--nic is net0 to net31",
            "ip assign ct-01 --nic net3": "ct-01 (lab/200) has no network interface net3",
            "ip assign ct-01 --range nosuch": "range 'nosuch' not found on the VM's cluster",
            "ip assign nosuch-vm": "VM 'nosuch-vm' not found",
            "ip release ct-01": "ct-01 (lab/200) holds no address from pvebot",
            "ip release web-01 --ip 10.20.0.99": "web-01 (lab/100) holds no address 10.20.0.99 from pvebot",
            "ip release web-01 --ip garbage": "'garbage' is not an IPv4 address",
            "vm create app-09 --template tmpl-deb --net nosuch": "range 'nosuch' not found on the VM's cluster",
            "net show nosuch": "range 'nosuch' not found",
            "net show 10.20.0.0/33": "'10.20.0.0/33' is not a network: the prefix is /0 to /32",
            "net show 10.20.0.5/24": "'10.20.0.5/24' has host bits set: the network is 10.20.0.0/24",
            "net show 300.20.0.0/24": "'300.20.0.0/24' is not a network like 10.20.0.0/24",
            "ip assign ct-01 --range 10.20.0.0/33": "'10.20.0.0/33' is not a network: the prefix is /0 to /32",
            "vm create app-09 --template tmpl-deb --net 10.99.0.0/24":
                "range '10.99.0.0/24' not found on the VM's cluster",
        }
        for line, answer in asked.items():
            said = _run(w, BOB if not line.startswith("ip release") else ALICE, line)
            assert f"❌ {answer}" in said, (line, said)
            assert not job_ids(said) and "apr-" not in said and "Traceback" not in said, (line, said)
        assert (_assigned(w), dict(w.sim.guest(100).config), dict(w.sim.guest(200).config)) == before


def test_audit_finds_each_kind_of_drift_on_the_company_s_vms_only(tmp_path: Path) -> None:
    with world(tmp_path, queue="embedded", doc=network_doc) as w:
        for line in ("ip assign web-01", "ip assign ct-01", "ip assign db-01"):
            [job] = job_ids(_run(w, BOB, line))
            assert w.wait_state(job, {"succeeded", "failed"}) == "succeeded"
        assert _assigned(w) == {"10.20.0.11": 100, "10.20.0.12": 200, "10.20.0.13": 101}
        assert "no drift" in _run(w, ALICE, "net audit")
        with w.sim.state.lock:
            # behind pvebot's back: web-01 renumbered, ct-01 back on DHCP and retagged, db-01 destroyed,
            # and one of Globex's VMs given an address inside Acme's range
            w.sim.guest(100).config["ipconfig0"] = "ip=10.20.0.77/24,gw=10.20.0.1"
            ct = w.sim.guest(200)
            ct.config["net0"] = ct.config["net0"].replace("ip=10.20.0.12/24", "ip=dhcp").replace("tag=120", "tag=999")
            del w.sim.state.guests[101]
            w.sim.guest(102).config["ipconfig0"] = "ip=10.20.0.99/24"
        audit = _run(w, ALICE, "net audit")
        for problem in (r"web-01 .*net0 +10\.20\.0\.77 is configured but pvebot did not assign it",
                        r"web-01 .*net0 +10\.20\.0\.11 is assigned but not configured",
                        r"ct-01 .*net0 +10\.20\.0\.12 is assigned but not configured",
                        r"ct-01 .*net0 +VLAN tag 999 differs from range acme-prod's 120",
                        r"lab/101 +net0 +10\.20\.0\.13 is assigned to a VM that no longer exists"):
            assert re.search(problem, audit), (problem, audit)
        assert "Network drift (5)" in audit and "app-02" not in audit and "10.20.0.99" not in audit, audit
