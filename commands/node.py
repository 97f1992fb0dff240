"""``node …``: a cluster node's package updates, and upgrading it (with approval)."""

from __future__ import annotations

from commands.common import outcome_reply
from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Answer, Reply, Table
from core.rbac import Perm
from core.services import node_updates, requests


def register(registry: CommandRegistry) -> None:
    registry.command("node updates", permission=Perm.CLUSTER_MANAGE, args=(Param("node"),),
                     usage="node updates <cluster>/<node>")(node_updates_list)
    registry.command("node upgrade", operation="node.upgrade", args=(Param("node"),),
                     flags=(Param("reason", help="why (shown to the approver)"),),
                     usage="node upgrade <cluster>/<node> [--reason TEXT]")(node_upgrade)


def node_updates_list(args: Args, ctx: CommandContext) -> Reply:
    """The package updates available on a node, Proxmox packages first."""
    label, updates = node_updates.available(ctx.deps, ctx.principal, args["node"])
    if not updates:
        return Reply(text=f"{label} has no updates listed (as of its last apt-get update)")
    rows = tuple((u.package, u.old_version or "—", u.version, u.origin) for u in updates)
    proxmox = sum(1 for u in updates if u.proxmox)
    return Reply(title=f"Updates on {label} ({len(updates)}, {proxmox} Proxmox)",
                 table=Table(columns=("package", "installed", "new", "origin"), rows=rows))


def node_upgrade(args: Args, ctx: CommandContext) -> Answer:
    outcome = requests.operate(ctx.deps, ctx.principal, action="node.upgrade", ref=args["node"],
                               reason=args["reason"] or "", conversation=ctx.conversation,
                               request_id=ctx.request_id)
    return outcome_reply(ctx, outcome, f"node upgrade {args['node']}")
