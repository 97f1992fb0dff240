"""A plausible cluster for demos and benchmarks: nodes, storages, a few pools and many guests."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pvesim import PveSimulator

POOLS = ("acme", "globex", "initech", "umbrella")


def populate(sim: PveSimulator, *, guests: int, nodes: int = 3, pools: tuple[str, ...] = POOLS) -> None:
    """Add ``nodes`` nodes, shared storages, ``pools`` and ``guests`` guests spread over them, plus templates."""
    names = [f"pve{i + 1}" for i in range(nodes)]
    for name in names:
        sim.add_node(name)
    sim.add_storage("local", content="iso,vztmpl,backup")
    sim.add_storage("local-lvm", content="images,rootdir")
    for pool in pools:
        sim.add_pool(pool)
    sim.add_guest(vmid=9000, name="tmpl-debian-12", kind="qemu", node=names[0], template=True, pool="templates")
    sim.add_guest(vmid=9001, name="tmpl-ct-debian-12", kind="lxc", node=names[0], template=True, pool="templates",
                  disk_gb=8, memory_mb=512)
    for i in range(guests):
        vmid = 100 + i
        kind = "lxc" if i % 4 == 3 else "qemu"
        sim.add_guest(
            vmid=vmid, name=f"{pools[i % len(pools)]}-{kind}-{i:04d}", kind=kind, node=names[i % nodes],
            pool=pools[i % len(pools)], status="running" if i % 3 else "stopped", cores=1 + i % 4,
            memory_mb=1024 * (1 + i % 4), disk_gb=8 if kind == "lxc" else 32, tags=("demo",),
            ip=f"10.{(i // 250) % 250}.{i % 250}.{10 + i % 200}",
        )
