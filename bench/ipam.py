"""Address allocation cost: ``ipam.allocate`` in a /16 with 60,000 addresses already assigned.

Each allocation is one unit of work: read the range's taken addresses (one indexed column), walk to
the lowest free one, insert it (the unique key decides between concurrent allocators), commit.
The taken addresses are spread over the range with holes, so the walk is not a trivial append.

    .venv/bin/python bench/ipam.py [--assigned 60000] [--allocations 200] [--url sqlite:///…|mysql+pymysql://…]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import _path  # noqa: F401  (the repository first on sys.path)
import sqlalchemy as sa  # noqa: E402

from adapters.sql import migrate  # noqa: E402
from adapters.sql import tables as t  # noqa: E402
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine  # noqa: E402
from core.model import Cluster, Company, IpRange, Role, User  # noqa: E402
from core.principal import Principal, Scope  # noqa: E402
from core.services import addresses, ipam  # noqa: E402
from core.services.deps import Deps  # noqa: E402
from tests.fakes import FakeClock, FakeHypervisors, FakeNotifier, FakeQueue  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assigned", type=int, default=60_000)
    parser.add_argument("--allocations", type=int, default=200)
    parser.add_argument("--url", default=None, help="database URL (default: a SQLite file in a temporary folder)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        migrate.upgrade(engine)
        factory = SqlUnitOfWorkFactory(engine)
        deps = Deps(uow_factory=factory, hypervisors=FakeHypervisors(), queue=FakeQueue(), notifier=FakeNotifier(),
                    clock=FakeClock(datetime(2026, 12, 2, tzinfo=UTC)))
        with factory(Scope.everything()) as uow:
            cluster = Cluster(name="bench", api_urls=["https://10.0.0.1:8006"], token_id="pvebot@pve!bench",
                              token_secret_encrypted="x")
            uow.clusters.add(cluster)
            company = Company(slug="bench", name="Bench")
            uow.companies.add(company)
            user = User(email="bench@bench.example", name="Bench", role=Role.USER, company_id=company.id)
            uow.users.add(user)
            rng = IpRange(company_id=company.id or 0, cluster_id=cluster.id or 0, name="big", cidr="10.50.0.0/16",
                          gateway="10.50.0.1", vlan=150, bridge="vmbr0", reserved=["10.50.0.2-10.50.0.255"])
            uow.ip_ranges.add(rng)
            uow.commit()
            who = Principal.of(user)
        first, last = addresses.usable(rng)
        # taken: the first addresses nearly full (one hole in 50), so the lowest free sits deep in the range
        rand = random.Random(15)
        taken = [n for n in range(first + 255, last + 1) if rand.random() > 0.02][: args.assigned]
        now = datetime(2026, 12, 2, tzinfo=UTC)
        rows = [{"range_id": rng.id, "company_id": company.id, "address": addresses.text_of(n), "number": n,
                 "cluster_id": cluster.id, "vmid": 100 + i, "nic": 0, "assigned_by": "seed", "assigned_at": now}
                for i, n in enumerate(taken)]
        started = time.perf_counter()
        with engine.begin() as conn:
            for k in range(0, len(rows), 5000):
                conn.execute(sa.insert(t.ip_assignments), rows[k : k + 5000])
        print(f"seeded {len(rows):,} assignments in a /16 in {time.perf_counter() - started:.1f} s "
              f"({engine.dialect.name})")

        timings = []
        for i in range(args.allocations):
            begin = time.perf_counter()
            ipam.allocate(deps, who, rng=rng, vmid=1_000_000 + i, nic=0, label=f"vm {i}")
            timings.append((time.perf_counter() - begin) * 1000)
        timings.sort()
        p50 = statistics.median(timings)
        p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
        print(f"allocation with {args.assigned:,} assigned: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
              f"max {timings[-1]:.1f} ms over {len(timings)} allocations")
        engine.dispose()


if __name__ == "__main__":
    main()
