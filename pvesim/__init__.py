"""A Proxmox VE API simulator: real paths, parameters, answers and status codes over HTTPS.

Used by the tests (the gateway talks to it through proxmoxer, over TLS on loopback) and by
``pvebot demo``. Validation comes from the official PVE 8.4 schema, so whatever Proxmox
would refuse, the simulator refuses too::

    sim = PveSimulator(task_seconds=0.3)
    sim.add_token("pvebot@pve!bot", "the-secret")
    sim.add_node("pve1")
    sim.add_storage("local", content="images,rootdir,backup,iso,vztmpl")
    sim.add_pool("acme")
    sim.add_guest(vmid=100, name="web-01", kind="qemu", node="pve1", pool="acme", status="running")
    with sim.start() as server:
        ...  # server.url, server.fingerprint, server.ca_file; sim.faults; sim.requests
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from pvesim import api_backup
from pvesim.context import SimContext
from pvesim.faults import Faults
from pvesim.server import ApiApp, ApiSettings, RecordedRequest, SimServer
from pvesim.state import SimGuest, SimNode, SimState, SimStorage, default_config
from pvesim.tasks import TaskEngine
from pvesim.tls import make_certificates

__all__ = ["PveSimulator", "RecordedRequest", "SimServer"]


class PveSimulator:
    """One simulated cluster. Populate it, then :meth:`start` it; several can run at once."""

    def __init__(self, *, task_seconds: float = 0.3, lock_timeout: float = 2.0, auth_failure_delay: float = 0.0):
        self.state = SimState()
        self.tasks = TaskEngine(self.state, task_seconds=task_seconds, lock_timeout=lock_timeout)
        self.faults = Faults(self.state, self.tasks)
        self._api = ApiApp(SimContext(self.state, self.tasks), faults=self.faults,
                           settings=ApiSettings(auth_failure_delay=auth_failure_delay))
        self.server: SimServer | None = None
        self._tmp: Path | None = None

    # -- settings ------------------------------------------------------------------------

    @property
    def task_seconds(self) -> float:
        return self.tasks.task_seconds

    @task_seconds.setter
    def task_seconds(self, seconds: float) -> None:
        self.tasks.task_seconds = seconds

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, as ``(method, path, had_auth_header)``."""
        return self._api.requests

    # -- population ----------------------------------------------------------------------

    def add_token(self, token_id: str, secret: str, privileges: Iterable[str] | None = None) -> None:
        """``privileges`` None grants everything; otherwise only these privileges, on every path."""
        with self.state.lock:
            self.state.tokens[token_id] = (secret, None if privileges is None else frozenset(privileges))

    def add_node(self, name: str) -> None:
        with self.state.lock:
            self.state.nodes[name] = SimNode(name, versions=[
                {"Package": "proxmox-ve", "Title": "Proxmox Virtual Environment", "Version": "8.4.0",
                 "CurrentState": "Installed", "RunningKernel": "6.8.12-9-pve", "Origin": "Proxmox",
                 "Priority": "optional", "Section": "admin", "Arch": "all", "Description": "The Proxmox VE"},
                {"Package": "pve-manager", "Title": "Proxmox VE manager", "Version": "8.4.1",
                 "CurrentState": "Installed", "ManagerVersion": "8.4.1", "Origin": "Proxmox", "Priority": "optional",
                 "Section": "admin", "Arch": "amd64", "Description": "The Proxmox VE manager"},
            ])

    def offer_update(self, node: str, package: str, version: str, *, old_version: str, origin: str = "Debian",
                     cached: bool = True) -> None:
        """A new ``version`` of ``package`` in the node's repositories; ``cached``: as if apt-get update ran."""
        row = {"Package": package, "Title": f"{package} package", "Description": f"The {package} package",
               "Version": version, "OldVersion": old_version, "Origin": origin, "Priority": "optional",
               "Section": "admin", "Arch": "amd64"}
        with self.state.lock:
            sim_node = self.state.node(node)
            sim_node.repository[package] = row
            if cached:
                sim_node.pkgupdates = [r for r in sim_node.pkgupdates if r["Package"] != package] + [dict(row)]

    def add_storage(
        self, name: str, node: str | None = None, content: str = "images,rootdir,backup,iso,vztmpl",
        *, shared: bool = False,
    ) -> None:
        with self.state.lock:
            self.state.storages[name] = SimStorage(
                name=name, nodes=None if node is None else (node,), content=frozenset(content.split(",")),
                shared=shared,
            )

    def add_pool(self, name: str) -> None:
        with self.state.lock:
            self.state.pools.add(name)

    def add_guest(
        self, *, vmid: int, name: str, kind: str = "qemu", node: str = "pve1", pool: str | None = None,
        status: str = "stopped", template: bool = False, cores: int = 2, memory_mb: int = 2048, disk_gb: int = 32,
        tags: tuple[str, ...] = (), ip: str | None = None, lock: str | None = None, uptime: int = 0,
    ) -> None:
        """A guest; a running one has been up ``uptime`` seconds."""
        if kind not in ("qemu", "lxc"):
            raise ValueError("kind is qemu or lxc")
        config = default_config(vmid=vmid, kind=kind, name=name, cores=cores, memory_mb=memory_mb, disk_gb=disk_gb,
                                tags=tags, ip=ip, template=template)
        guest = SimGuest(vmid=vmid, kind=kind, node=node, pool=pool, status="stopped", config=config,
                         qmpstatus="stopped" if kind == "qemu" else None, ip=ip, lock=lock)
        guest.set_running(status == "running")
        if guest.started_at is not None:
            guest.started_at -= uptime
        with self.state.lock:
            if node not in self.state.nodes:
                raise ValueError(f"add_node({node!r}) first")
            if pool is not None:
                self.state.pools.add(pool)
            self.state.guests[vmid] = guest

    def run_backup_job(self, job_id: str) -> list[str]:
        """Run a backup job now the way pvescheduler does at its slot; the UPIDs of the tasks started."""
        assert self.server is not None, "start() the simulator first"
        ctx = self._api.ctx

        async def run() -> list[str]:
            return api_backup.run_job(ctx, job_id)

        return asyncio.run_coroutine_threadsafe(run(), self.server.loop).result(timeout=10)

    def backup_as(self, user: str, vmid: int, *, storage: str = "local") -> str:
        """Back ``vmid`` up as ``user`` does from the web UI ("Backup now"); the task's UPID."""
        assert self.server is not None, "start() the simulator first"
        ctx = self._api.ctx

        async def run() -> str:
            with self.state.lock:
                node = self.state.guests[vmid].node
                return api_backup.start_vzdump(ctx, node=node, options={"vmid": str(vmid), "storage": storage},
                                               user=user)

        return asyncio.run_coroutine_threadsafe(run(), self.server.loop).result(timeout=10)

    def backup_outcome(self, vmid: int, outcome: tuple[str, str] | None) -> None:
        """Make the next backups of ``vmid`` fail (``("error", reason)``) or warn; None: succeed again."""
        with self.state.lock:
            if outcome is None:
                self.state.backup_outcomes.pop(vmid, None)
            else:
                self.state.backup_outcomes[vmid] = outcome

    def guest(self, vmid: int) -> SimGuest:
        """The live guest record, for assertions (read it under ``sim.state.lock``)."""
        with self.state.lock:
            return self.state.guests[vmid]

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, port: int = 0) -> SimServer:
        if self.server is not None:
            return self.server
        self._tmp = Path(tempfile.mkdtemp(prefix="pve-sim-"))
        certs = make_certificates(self._tmp)
        self.server = SimServer(self._api, certs, port=port, on_stop=self._cleanup)
        self.faults.node_listeners.append(self.server.set_node_online)
        return self.server

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def _cleanup(self) -> None:
        self.faults.node_listeners.clear()
        self.server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
