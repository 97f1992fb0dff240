"""Package updates and the cluster's quorum: ``/nodes/{node}/apt/update``, ``apt/versions``, ``/cluster/status``.

As in PVE (``PVE/API2/APT.pm``): GET apt/update reads the cache the last ``apt-get update`` wrote, POST runs
an ``aptupdate`` task that refreshes it and, with ``notify=1``, marks what it announced in ``NotifyStatus``.
"""

from __future__ import annotations

from typing import Any

from pvesim.context import Call, SimContext, route
from pvesim.state import ApiError
from pvesim.tasks import SimTask


@route("GET", "/cluster/status")
async def cluster_status(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        nodes = list(ctx.state.nodes.values())
        rows: list[dict[str, Any]] = [{"type": "cluster", "id": "cluster", "name": ctx.state.cluster_name,
                                       "nodes": len(nodes), "quorate": int(ctx.state.quorate), "version": 3}]
        for i, node in enumerate(nodes, start=1):
            rows.append({"type": "node", "id": f"node/{node.name}", "name": node.name, "nodeid": i,
                         "online": int(node.online), "local": int(i == 1), "level": "",
                         "ip": f"192.0.2.{i}"})
        return rows


def _online(ctx: SimContext, name: str) -> None:
    node = ctx.state.node(name)
    if not node.online:
        # proxyto node: pveproxy cannot reach the node's daemon
        raise ApiError(595, f"no route to host {name}")


@route("GET", "/nodes/{node}/apt/update")
async def list_updates(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        _online(ctx, call.node)
        return [dict(row) for row in ctx.state.node(call.node).pkgupdates]


@route("POST", "/nodes/{node}/apt/update")
async def update_database(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        _online(ctx, call.node)
    notify = call.flag("notify")

    async def work(task: SimTask) -> None:
        await ctx.tasks.progress(task, ["starting apt-get update", "Reading package lists..."])
        with ctx.state.lock:
            node = ctx.state.node(call.node)
            old = {row["Package"]: row for row in node.pkgupdates}
            rows = []
            for name, offered in sorted(node.repository.items()):
                row = dict(offered)
                if "NotifyStatus" in old.get(name, {}):
                    row["NotifyStatus"] = old[name]["NotifyStatus"]
                if notify:
                    row["NotifyStatus"] = row["Version"]
                rows.append(row)
            node.pkgupdates = rows

    with ctx.state.lock:
        return ctx.tasks.start(node=call.node, type_="aptupdate", id_="", user=call.user, work=work)


@route("GET", "/nodes/{node}/apt/versions")
async def versions(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        _online(ctx, call.node)
        return [dict(row) for row in ctx.state.node(call.node).versions]
