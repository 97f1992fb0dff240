"""``backup list`` and ``backup status`` cost: wall time and Proxmox calls for a company of 200 VMs x 30 backups.

One simulated cluster over HTTPS (two nodes), the company's 200 VMs on both, 30 backups each split
between a shared storage (backup-nfs) and the nodes' local one. Storage content must be read once
per storage and node (the shared one once), never once per VM. The first status also records the
owner of every backup (one config read per VM, to compare its creation time); later ones do not.

    .venv/bin/python bench/backups.py [--vms 200] [--backups 30] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import _path  # noqa: F401  (the repository first on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.pool import StaticPool  # noqa: E402

from adapters.crypto import FernetCipher, generate_key  # noqa: E402
from adapters.proxmox import ProxmoxHypervisors  # noqa: E402
from adapters.sql.tables import metadata  # noqa: E402
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine  # noqa: E402
from core.clock import SystemClock  # noqa: E402
from core.model import Cluster, Company, PoolBinding, Role, TlsMode, User  # noqa: E402
from core.principal import Principal, Scope  # noqa: E402
from core.services import backups  # noqa: E402
from core.services.deps import Deps  # noqa: E402
from pvesim import PveSimulator  # noqa: E402
from pvesim.state import SimBackup  # noqa: E402
from tests.fakes import FakeNotifier, FakeQueue  # noqa: E402

TOKEN_ID, SECRET = "pvebot@pve!bench", "bench-secret"


def _populate(sim: PveSimulator, *, vms: int, per_vm: int) -> None:
    sim.add_token(TOKEN_ID, SECRET)
    for node in ("pve1", "pve2"):
        sim.add_node(node)
    sim.add_storage("local", content="iso,vztmpl,backup")
    sim.add_storage("backup-nfs", content="backup", shared=True)
    sim.add_storage("local-lvm", content="images,rootdir")
    now = int(time.time())
    for i in range(vms):
        vmid, node = 1000 + i, ("pve1", "pve2")[i % 2]
        sim.add_guest(vmid=vmid, name=f"vm-{i:03d}", node=node, pool="acme", status="running")
        with sim.state.lock:
            # created a year ago: its backups of the last month are its own
            sim.state.guests[vmid].config["meta"] = f"creation-qemu=9.0.2,ctime={now - 365 * 86400}"
            config = dict(sim.state.guests[vmid].config)
            for k in range(per_vm):
                storage = "backup-nfs" if k % 2 else "local"
                ctime = now - (k + 1) * 86400
                volid = f"{storage}:backup/vzdump-qemu-{vmid}-{ctime}.vma.zst"
                sim.state.backups[volid] = SimBackup(volid=volid, storage=storage, node=node, vmid=vmid, kind="qemu",
                                                     ctime=ctime, size=2 * 1024**3, notes=f"vm-{i:03d}",
                                                     config=config, name=f"vm-{i:03d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--backups", type=int, default=30, help="backups per VM")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    sim = PveSimulator()
    _populate(sim, vms=args.vms, per_vm=args.backups)
    cipher = FernetCipher([generate_key()])
    hypervisors = ProxmoxHypervisors(cipher, timeout=60)
    engine = make_engine("sqlite://", poolclass=StaticPool)
    metadata.create_all(engine)
    factory = SqlUnitOfWorkFactory(engine)
    with sim.start() as server:
        with factory(Scope.everything()) as uow:
            company = Company(slug="acme", name="Acme")
            uow.companies.add(company)
            cluster = Cluster(name="lab", api_urls=[server.url], token_id=TOKEN_ID,
                              token_secret_encrypted=cipher.encrypt(SECRET), tls_mode=TlsMode.FINGERPRINT,
                              tls_value=server.fingerprint)
            uow.clusters.add(cluster)
            uow.pool_bindings.add(PoolBinding(company_id=company.id or 0, cluster_id=cluster.id or 0, pool="acme"))
            user = User(email="alice@acme.example", name="Alice", role=Role.USER, company_id=company.id)
            uow.users.add(user)
            uow.commit()
        principal = Principal.of(user)
        deps = Deps(uow_factory=factory, hypervisors=hypervisors, queue=FakeQueue(), notifier=FakeNotifier(),
                    clock=SystemClock())
        hypervisors.for_cluster(cluster).inventory(refresh=True)  # warm-up: TLS and connection pools

        def measure(label: str, call: object, rounds: int) -> None:
            times: list[float] = []
            calls: Counter[str] = Counter()
            for _ in range(rounds):
                sim.requests.clear()
                t0 = time.perf_counter()
                call()  # type: ignore[operator]
                times.append(time.perf_counter() - t0)
                calls.update(_kind(r.path) for r in sim.requests)
            per = ", ".join(f"{k} {v / rounds:g}" for k, v in sorted(calls.items()))
            print(f"{label}: median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms; "
                  f"Proxmox calls per run: {per}")

        print(f"company: {args.vms} VMs x {args.backups} backups on 2 storages (backup-nfs shared, local on 2 "
              f"nodes) = {args.vms * args.backups} backups; rounds: {args.rounds}")
        measure("backup status, first (records every owner)", lambda: backups.status(deps, principal), 1)
        measure("backup status", lambda: backups.status(deps, principal), args.rounds)
        measure("backup list vm-007", lambda: backups.for_vm(deps, principal, "vm-007"), args.rounds)
        states, _ = backups.status(deps, principal)
        print(f"status rows: {len(states)}, flagged: {sum(1 for s in states if s.stale)}")
    hypervisors.close()
    engine.dispose()


def _kind(path: str) -> str:
    path = path.removeprefix("/api2/json")
    if path.endswith("/content"):
        node, storage = path.split("/")[2], path.split("/")[4]
        return f"content {storage}@{node}"
    if path.endswith("/config"):
        return "config"
    return path


if __name__ == "__main__":
    main()
