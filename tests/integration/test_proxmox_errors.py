"""Every way talking to Proxmox can fail, and what the gateway makes of it.

Messages must be safe for chat: never the token secret, never the cluster's host or address.
"""

from __future__ import annotations

import logging
import socket

import pytest

from adapters.crypto import FernetCipher
from adapters.proxmox import ProxmoxHypervisor, ProxmoxHypervisors
from core.errors import (
    BotError,
    ConfigurationError,
    Conflict,
    ExternalSystemError,
    InvalidArguments,
    NotFound,
    PermissionDenied,
)
from core.model import GuestRef, TlsMode
from core.ports import ConfigChange
from pvesim import PveSimulator, SimServer
from tests import proxmox_support
from tests.proxmox_support import TOKEN_SECRET, make_cluster, wait_task

# fixtures from the support module (tests/conftest.py may import them too)
pve_sim = proxmox_support.pve_sim
pve_cipher = proxmox_support.pve_cipher
pve_hypervisors = proxmox_support.pve_hypervisors

WEB = GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=100)
APP = GuestRef(cluster="lab", node="pve2", kind="qemu", vmid=102)
WRONG_PIN = ":".join(["AB"] * 32)

Sim = tuple[PveSimulator, SimServer]


@pytest.fixture
def hv(pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher) -> ProxmoxHypervisor:
    return pve_hypervisors.for_cluster(make_cluster(pve_sim[1], cipher=pve_cipher))


def assert_safe(error: BotError) -> None:
    assert TOKEN_SECRET not in error.user_message
    assert "127.0.0.1" not in error.user_message and "localhost" not in error.user_message
    assert error.__cause__ is not None  # raised "from" the original


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- authentication and authorization --------------------------------------------------------


def test_bad_token_is_401(pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher) -> None:
    cluster = make_cluster(pve_sim[1], cipher=pve_cipher, secret="not-the-secret")
    with pytest.raises(ExternalSystemError, match="cluster lab: Proxmox refused the API token \\(401\\)") as err:
        pve_hypervisors.for_cluster(cluster).inventory()
    assert_safe(err.value)
    assert "not-the-secret" not in err.value.user_message


def test_unknown_token_id_is_401(pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher) -> None:
    cluster = make_cluster(pve_sim[1], cipher=pve_cipher, token_id="intruder@pve!x")
    with pytest.raises(ExternalSystemError, match="401"):
        pve_hypervisors.for_cluster(cluster).inventory()


def test_malformed_token_id_is_a_configuration_error(
    pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher
) -> None:
    with pytest.raises(ConfigurationError, match="user@realm!tokenname"):
        pve_hypervisors.for_cluster(make_cluster(pve_sim[1], cipher=pve_cipher, token_id="just-a-name"))


def test_missing_privilege_is_403_naming_it(
    pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher
) -> None:
    sim, server = pve_sim
    sim.add_token("auditor@pve!ro", "ro-secret", privileges={"VM.Audit", "Datastore.Audit"})
    hv = pve_hypervisors.for_cluster(
        make_cluster(server, cipher=pve_cipher, token_id="auditor@pve!ro", secret="ro-secret")
    )
    assert len(hv.inventory()) == 7 and hv.status(WEB).guest.name == "web-01"
    with pytest.raises(PermissionDenied, match="lacks the Proxmox privilege VM.PowerMgmt on /vms/100") as err:
        hv.power(WEB, "stop")
    assert_safe(err.value)
    with pytest.raises(PermissionDenied, match="VM.Snapshot"):
        hv.create_snapshot(WEB, "nope")
    with pytest.raises(PermissionDenied, match="VM.Backup"):
        hv.backup(WEB, storage="local")
    with pytest.raises(PermissionDenied, match="VM.Clone on /vms/9000"):
        hv.clone(GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=9000), newid=150, name="x", pool="acme")


def test_without_vm_audit_the_inventory_is_empty(
    pve_sim: Sim, pve_hypervisors: ProxmoxHypervisors, pve_cipher: FernetCipher
) -> None:
    pve_sim[0].add_token("nobody@pve!t", "s", privileges=set())
    hv = pve_hypervisors.for_cluster(make_cluster(pve_sim[1], cipher=pve_cipher, token_id="nobody@pve!t", secret="s"))
    assert hv.inventory() == []


# -- Proxmox's own refusals ------------------------------------------------------------------


def test_locked_guest_is_a_conflict(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    pve_sim[0].add_guest(vmid=300, name="locked", node="pve1", pool="acme", lock="backup")
    locked = GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=300)
    with pytest.raises(Conflict, match="guest 300 is locked \\(backup\\)") as err:
        hv.delete(locked)
    assert_safe(err.value)
    with pytest.raises(Conflict, match="locked"):
        hv.create_snapshot(locked, "s1")
    status = wait_task(hv, hv.power(locked, "start"))
    assert status.exitstatus == "VM 300 is locked (backup)"


def test_guest_busy_with_a_task_is_a_conflict(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    sim, _ = pve_sim
    sim.task_seconds = 2
    backup = hv.backup(WEB, storage="local")
    with pytest.raises(Conflict, match="guest 100 is locked \\(backup\\)"):
        hv.configure(WEB, ConfigChange(cores=3))
    ct = GuestRef(cluster="lab", node="pve1", kind="lxc", vmid=200)
    sim.task_seconds = 1.5
    hv.power(ct, "reboot")
    with pytest.raises(Conflict, match="guest 200 is busy with another task") as err:
        hv.configure(ct, ConfigChange(cores=3))  # PUT waits for the lock file, then gives up
    assert "/var/lock" not in err.value.user_message and "/run/lock" not in err.value.user_message
    hv.cancel_task(backup)


def test_proxmox_500_message_is_passed_on_without_hosts(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    pve_sim[0].faults.http_500(path_prefix="/nodes/pve1/qemu/100/status", message="got timeout on 10.1.2.3:8006")
    with pytest.raises(ExternalSystemError, match="cluster lab: Proxmox says: got timeout on <address>") as err:
        hv.power(WEB, "stop")
    assert_safe(err.value)


def test_parameters_proxmox_refuses_are_invalid_arguments(hv: ProxmoxHypervisor) -> None:
    with pytest.raises(InvalidArguments, match="Proxmox refused the request: name:"):
        hv.clone(GuestRef(cluster="lab", node="pve1", kind="qemu", vmid=9000), newid=150, name="bad_name!",
                 pool="acme")


def test_offline_node_via_another_node(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    pve_sim[0].faults.node_offline("pve2")
    with pytest.raises(ExternalSystemError, match="a node did not answer \\(No route to host\\)"):
        hv.status(APP)
    with pytest.raises(NotFound, match="node pve9 is not part of the cluster"):
        hv.status(GuestRef(cluster="lab", node="pve9", kind="qemu", vmid=102))


# -- connections, TLS, failover, retries -----------------------------------------------------


def test_connection_refused(pve_hypervisors: ProxmoxHypervisors, pve_sim: Sim, pve_cipher: FernetCipher) -> None:
    cluster = make_cluster(pve_sim[1], cipher=pve_cipher, api_urls=[f"https://127.0.0.1:{free_port()}"])
    with pytest.raises(ExternalSystemError, match="no API URL of the cluster accepted a connection") as err:
        pve_hypervisors.for_cluster(cluster).inventory()
    assert_safe(err.value)


def test_failover_to_second_url(pve_hypervisors: ProxmoxHypervisors, pve_sim: Sim, pve_cipher: FernetCipher) -> None:
    sim, server = pve_sim
    dead = f"https://127.0.0.1:{free_port()}"
    hv = pve_hypervisors.for_cluster(make_cluster(server, cipher=pve_cipher, api_urls=[dead, server.url]))
    assert len(hv.inventory()) == 7
    # a POST fails over too: a refused connection never reached Proxmox
    assert wait_task(hv, hv.power(WEB, "reboot")).ok


def test_failover_when_a_node_goes_down(
    pve_hypervisors: ProxmoxHypervisors, pve_sim: Sim, pve_cipher: FernetCipher
) -> None:
    sim, server = pve_sim
    urls = [server.node_url("pve1"), server.node_url("pve2")]
    hv = pve_hypervisors.for_cluster(make_cluster(server, cipher=pve_cipher, api_urls=urls))
    assert hv.inventory(refresh=True)[0].cluster == "lab"
    sim.faults.node_offline("pve1")
    guests = {g.vmid: g for g in hv.inventory(refresh=True)}  # answered by pve2
    assert guests[100].status == "unknown" and guests[102].status == "running"
    assert wait_task(hv, hv.power(APP, "reboot")).ok
    sim.faults.node_offline("pve2")
    with pytest.raises(ExternalSystemError, match="no API URL"):
        hv.inventory(refresh=True)
    sim.faults.node_offline("pve1", False)
    assert len(hv.inventory(refresh=True)) == 7


def test_right_fingerprint_connects(
    pve_hypervisors: ProxmoxHypervisors, pve_sim: Sim, pve_cipher: FernetCipher
) -> None:
    sim, server = pve_sim
    cluster = make_cluster(server, cipher=pve_cipher, tls_value=server.fingerprint.lower())
    assert len(pve_hypervisors.for_cluster(cluster).inventory()) == 7
    assert sim.requests[0].had_auth_header


def test_wrong_fingerprint_is_refused_before_the_token_is_sent(
    pve_hypervisors: ProxmoxHypervisors, pve_sim: Sim, pve_cipher: FernetCipher
) -> None:
    sim, server = pve_sim
    hv = pve_hypervisors.for_cluster(make_cluster(server, cipher=pve_cipher, tls_value=WRONG_PIN))
    with pytest.raises(ExternalSystemError, match="certificate mismatch.*pinned") as err:
        hv.inventory()
    assert_safe(err.value)
    with pytest.raises(ExternalSystemError, match="certificate mismatch"):
        hv.power(WEB, "stop")
    # the handshake ended the connection: no request, so no Authorization header, ever reached the server
    assert sim.requests == []


def test_wrong_pin_is_not_failed_over(
    pve_hypervisors: ProxmoxHypervisors, pve_sim: Sim, pve_cipher: FernetCipher
) -> None:
    sim, server = pve_sim
    urls = [server.url, server.node_url("pve2")]
    cluster = make_cluster(server, cipher=pve_cipher, tls_value=WRONG_PIN, api_urls=urls)
    with pytest.raises(ExternalSystemError, match="certificate mismatch"):
        pve_hypervisors.for_cluster(cluster).inventory()
    assert sim.requests == []


def test_bad_fingerprint_setting(pve_hypervisors: ProxmoxHypervisors, pve_sim: Sim, pve_cipher: FernetCipher) -> None:
    with pytest.raises(ConfigurationError, match="SHA-256"):
        pve_hypervisors.for_cluster(make_cluster(pve_sim[1], cipher=pve_cipher, tls_value="AB:CD"))


def test_ca_file_that_did_not_sign_the_cert(
    pve_hypervisors: ProxmoxHypervisors, pve_sim: Sim, pve_cipher: FernetCipher
) -> None:
    other = PveSimulator()
    other.add_node("x")
    with other.start() as other_server:
        cluster = make_cluster(pve_sim[1], cipher=pve_cipher, tls_mode=TlsMode.CA_FILE, tls_value=other_server.ca_file)
        with pytest.raises(ExternalSystemError, match="not trusted by the configured CA file"):
            pve_hypervisors.for_cluster(cluster).inventory()
    assert pve_sim[0].requests == []


# urllib3 warns on every unverified request; that is the point of this mode, so let it
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_mode_works_and_warns(
    pve_hypervisors: ProxmoxHypervisors, pve_sim: Sim, pve_cipher: FernetCipher, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = make_cluster(pve_sim[1], cipher=pve_cipher, tls_mode=TlsMode.INSECURE)
    with caplog.at_level(logging.WARNING, logger="adapters.proxmox.transport"):
        hv = pve_hypervisors.for_cluster(cluster)
    assert "TLS VERIFICATION IS OFF for cluster lab" in caplog.text
    assert len(hv.inventory()) == 7


def test_dropped_read_is_retried(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    sim, _ = pve_sim
    sim.faults.drop_connection(count=1)
    assert len(hv.inventory()) == 7
    assert [r.path for r in sim.requests] == ["/api2/json/cluster/resources"] * 2


def test_dropped_action_is_not_retried(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    sim, _ = pve_sim
    sim.faults.drop_connection(count=1)
    with pytest.raises(ExternalSystemError, match="dropped; the action may or may not have happened") as err:
        hv.power(WEB, "stop")
    assert_safe(err.value)
    assert [r.method for r in sim.requests] == ["POST"]


def test_slow_read_times_out_then_retries(
    pve_sim: Sim, pve_cipher: FernetCipher
) -> None:
    sim, server = pve_sim
    hvs = ProxmoxHypervisors(pve_cipher, timeout=0.3, read_retries=1, retry_backoff=0)
    try:
        hv = hvs.for_cluster(make_cluster(server, cipher=pve_cipher))
        sim.faults.slow(seconds=0.6, count=1)
        assert len(hv.inventory()) == 7
        sim.faults.slow(seconds=0.6, count=2)
        with pytest.raises(ExternalSystemError, match="did not answer within 0.3s") as err:
            hv.inventory(refresh=True)
        assert_safe(err.value)
        sim.faults.slow(seconds=0.6, count=1)
        with pytest.raises(ExternalSystemError, match="may still have been started"):
            hv.power(WEB, "reboot")
    finally:
        hvs.close()


def test_failed_task_and_repeated_500(hv: ProxmoxHypervisor, pve_sim: Sim) -> None:
    sim, _ = pve_sim
    sim.faults.http_500(count=3, message="cluster not ready - no quorum?")
    for _ in range(3):  # a 500 is Proxmox's answer, not a transport error: no retry
        with pytest.raises(ExternalSystemError, match="no quorum"):
            hv.inventory(refresh=True)
    assert len(sim.requests) == 3
    assert len(hv.inventory(refresh=True)) == 7
