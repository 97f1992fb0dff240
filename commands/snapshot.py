"""``snapshot …``: list, create, roll back and delete snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

from commands.common import outcome_reply
from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Answer, Reply, Table
from core.rbac import Perm
from core.services import vms


def register(registry: CommandRegistry) -> None:
    @registry.command("snapshot list", permission=Perm.SNAPSHOT_READ, args=(Param("vm"),))
    def snapshot_list(args: Args, ctx: CommandContext) -> Reply:
        """List a VM's snapshots, oldest first."""
        owned, snaps = vms.snapshots(ctx.deps, ctx.principal, args["vm"])
        if not snaps:
            return Reply(text=f"{owned.label} has no snapshots")
        rows = tuple(
            (
                s.name,
                datetime.fromtimestamp(s.snaptime, UTC).strftime("%Y-%m-%d %H:%M") if s.snaptime else "—",
                s.parent or "—",
                s.description[:60],
            )
            for s in snaps
        )
        return Reply(title=f"Snapshots of {owned.label}",
                     table=Table(columns=("name", "taken (UTC)", "parent", "description"), rows=rows))

    @registry.command("snapshot create", operation="snapshot.create",
                      args=(Param("vm"), Param("name", required=False)))
    def snapshot_create(args: Args, ctx: CommandContext) -> Answer:
        name = args["name"] or ctx.deps.clock.now().strftime("pvebot-%Y%m%d-%H%M%S")
        outcome = vms.operate(
            ctx.deps, ctx.principal, action="snapshot.create", ref=args["vm"],
            params={"name": vms.check_snapshot_name(name)}, conversation=ctx.conversation, request_id=ctx.request_id,
        )
        return outcome_reply(ctx, outcome, f"snapshot {args['vm']} as {name}")

    for verb in ("rollback", "delete"):
        registry.command(f"snapshot {verb}", operation=f"snapshot.{verb}", args=(Param("vm"), Param("name")),
                         flags=(Param("reason", help="why (shown to the approver)"),))(snapshot_destroy)


def snapshot_destroy(args: Args, ctx: CommandContext) -> Answer:
    """Roll back to, or delete, one snapshot: the operation the command names."""
    verb = ctx.command.split(" ", 1)[1]
    outcome = vms.operate(
        ctx.deps, ctx.principal, action=f"snapshot.{verb}", ref=args["vm"],
        params={"name": vms.check_snapshot_name(args["name"])}, reason=args["reason"] or "",
        conversation=ctx.conversation, request_id=ctx.request_id,
    )
    return outcome_reply(ctx, outcome, f"snapshot {verb} {args['vm']} {args['name']}")
