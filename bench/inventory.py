"""Inventory refresh cost: HTTP calls and wall time per refresh, 3 clusters x 2,000 guests.

Runs three simulated clusters over HTTPS on loopback and refreshes the gateway's inventory
of each several times through proxmoxer. Every refresh must be exactly one HTTP call per
cluster (``GET /cluster/resources?type=vm``), whatever the number of nodes or guests.

    .venv/bin/python bench/inventory.py [--clusters 3] [--guests 2000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import _path  # noqa: F401  (the repository first on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.crypto import FernetCipher, generate_key  # noqa: E402
from adapters.proxmox import ProxmoxHypervisors  # noqa: E402
from core.model import Cluster, TlsMode  # noqa: E402
from pvesim import PveSimulator  # noqa: E402
from pvesim.population import populate  # noqa: E402

TOKEN_ID, SECRET = "pvebot@pve!bench", "bench-secret"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--guests", type=int, default=2000, help="guests per cluster")
    parser.add_argument("--rounds", type=int, default=10, help="refreshes per cluster")
    args = parser.parse_args()

    cipher = FernetCipher([generate_key()])
    hypervisors = ProxmoxHypervisors(cipher, timeout=30)
    with ExitStack() as stack:
        sims: list[PveSimulator] = []
        clusters: list[Cluster] = []
        for i in range(args.clusters):
            sim = PveSimulator()
            sim.add_token(TOKEN_ID, SECRET)
            populate(sim, guests=args.guests, nodes=3)
            server = stack.enter_context(sim.start())
            sims.append(sim)
            clusters.append(Cluster(name=f"cluster{i + 1}", api_urls=[server.url], token_id=TOKEN_ID,
                                    token_secret_encrypted=cipher.encrypt(SECRET), tls_mode=TlsMode.FINGERPRINT,
                                    tls_value=server.fingerprint))
        stack.callback(hypervisors.close)

        # warm-up: TLS handshakes and connection pools, not what we measure
        for cluster in clusters:
            hypervisors.for_cluster(cluster).inventory(refresh=True)
        for sim in sims:
            sim.requests.clear()

        per_cluster: list[float] = []
        per_refresh: list[float] = []
        guests_seen = 0
        for _ in range(args.rounds):
            started = time.perf_counter()
            guests_seen = 0
            for cluster in clusters:
                t0 = time.perf_counter()
                guests_seen += len(hypervisors.for_cluster(cluster).inventory(refresh=True))
                per_cluster.append(time.perf_counter() - t0)
            per_refresh.append(time.perf_counter() - started)

        calls = [len(sim.requests) / args.rounds for sim in sims]
        paths = {r.path for sim in sims for r in sim.requests}

    print(f"clusters: {args.clusters}, guests per cluster: {args.guests} (+2 templates), rounds: {args.rounds}")
    print(f"guests per full refresh: {guests_seen}")
    print(f"HTTP calls per inventory refresh, per cluster: {', '.join(f'{c:g}' for c in calls)}  "
          f"(paths: {', '.join(sorted(paths))})")
    print(f"wall time per cluster refresh: median {statistics.median(per_cluster) * 1000:.1f} ms, "
          f"max {max(per_cluster) * 1000:.1f} ms")
    print(f"wall time per refresh of all {args.clusters} clusters (sequential): "
          f"median {statistics.median(per_refresh) * 1000:.1f} ms, max {max(per_refresh) * 1000:.1f} ms")
    if any(c != 1 for c in calls):
        raise SystemExit("FAIL: an inventory refresh must be exactly one HTTP call per cluster")


if __name__ == "__main__":
    main()
