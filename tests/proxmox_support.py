"""Reusable fixtures for running the Proxmox gateway against the simulator over real HTTPS.

Bind them in a test module (``pve_sim = proxmox_support.pve_sim``: an assignment, so ruff sees no
unused import shadowed by the test's parameter) or import them into ``tests/conftest.py``.
``pve_sim`` yields ``(sim, server)`` with a small two-node cluster:

=====  =========  =====  ====  =======  ========
vmid   name       kind   node  pool     status
=====  =========  =====  ====  =======  ========
100    web-01     qemu   pve1  acme     running (agent IP 10.0.0.10)
101    db-01      qemu   pve1  acme     stopped
102    app-02     qemu   pve2  globex   running
200    ct-01      lxc    pve1  acme     running (10.0.0.20)
201    ct-02      lxc    pve2  globex   stopped
9000   tmpl-deb   qemu   pve1  -        template
9001   tmpl-ct    lxc    pve1  -        template
=====  =========  =====  ====  =======  ========
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from adapters.crypto import FernetCipher, generate_key
from adapters.proxmox import ProxmoxHypervisors
from core.model import Cluster, TaskRef, TaskStatus, TlsMode
from core.ports import Hypervisor
from pvesim import PveSimulator, SimServer

TOKEN_ID = "pvebot@pve!bot"
TOKEN_SECRET = "5f3c1a9e-0d2b-4c7e-9a61-3b8f2e7d4c10"
TASK_SECONDS = 0.1


def build_simulator(*, task_seconds: float = TASK_SECONDS, lock_timeout: float = 0.5) -> PveSimulator:
    """The cluster in this module's docstring, not started."""
    sim = PveSimulator(task_seconds=task_seconds, lock_timeout=lock_timeout)
    sim.add_token(TOKEN_ID, TOKEN_SECRET)
    sim.add_node("pve1")
    sim.add_node("pve2")
    sim.add_storage("local", content="iso,vztmpl,backup")
    sim.add_storage("local-lvm", content="images,rootdir")
    sim.add_pool("acme")
    sim.add_pool("globex")
    sim.add_guest(vmid=100, name="web-01", kind="qemu", node="pve1", pool="acme", status="running",
                  cores=2, memory_mb=2048, disk_gb=32, tags=("prod", "web"), ip="10.0.0.10")
    sim.add_guest(vmid=101, name="db-01", kind="qemu", node="pve1", pool="acme", status="stopped", disk_gb=64)
    sim.add_guest(vmid=102, name="app-02", kind="qemu", node="pve2", pool="globex", status="running")
    sim.add_guest(vmid=200, name="ct-01", kind="lxc", node="pve1", pool="acme", status="running", disk_gb=8,
                  memory_mb=512, ip="10.0.0.20")
    sim.add_guest(vmid=201, name="ct-02", kind="lxc", node="pve2", pool="globex", status="stopped", disk_gb=8)
    sim.add_guest(vmid=9000, name="tmpl-deb", kind="qemu", node="pve1", template=True)
    sim.add_guest(vmid=9001, name="tmpl-ct", kind="lxc", node="pve1", template=True, disk_gb=8)
    return sim


@pytest.fixture
def pve_sim() -> Iterator[tuple[PveSimulator, SimServer]]:
    sim = build_simulator()
    with sim.start() as server:
        yield sim, server


@pytest.fixture
def pve_cipher() -> FernetCipher:
    return FernetCipher([generate_key()])


@pytest.fixture
def pve_hypervisors(pve_cipher: FernetCipher) -> Iterator[ProxmoxHypervisors]:
    """Gateways with short timeouts, closed after the test."""
    hvs = ProxmoxHypervisors(pve_cipher, timeout=2, cache_seconds=5, retry_backoff=0.01)
    yield hvs
    hvs.close()


def wait_task(hypervisor: Hypervisor, task: TaskRef, *, timeout: float = 5.0) -> TaskStatus:
    """Poll until the task has ended; its final status."""
    deadline = time.monotonic() + timeout
    while True:
        status = hypervisor.task_status(task)
        if not status.running:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"task still running after {timeout}s: {status}")
        time.sleep(0.02)


def make_cluster(
    server: SimServer, *, cipher: FernetCipher, name: str = "lab", token_id: str = TOKEN_ID,
    secret: str = TOKEN_SECRET, tls_mode: TlsMode = TlsMode.FINGERPRINT, tls_value: str | None = None,
    api_urls: list[str] | None = None,
) -> Cluster:
    """A :class:`Cluster` pointing at ``server``; by default pinned to its certificate fingerprint."""
    if tls_value is None:
        tls_value = {TlsMode.FINGERPRINT: server.fingerprint, TlsMode.CA_FILE: server.ca_file}.get(tls_mode)
    return Cluster(
        name=name,
        api_urls=api_urls or [server.url],
        token_id=token_id,
        token_secret_encrypted=cipher.encrypt(secret),
        tls_mode=tls_mode,
        tls_value=tls_value,
    )
