"""``approve``, ``deny``, ``approval list`` and ``approval channel``."""

from __future__ import annotations

from commands.registry import Args, CommandContext, CommandRegistry, Param
from core import timefmt
from core.chat import Reply, Table
from core.ids import parse_approval_id, show_approval
from core.rbac import Perm
from core.services import approval_cards, approvals, channels


def register(registry: CommandRegistry) -> None:
    @registry.command("approve", permission=Perm.APPROVAL_DECIDE, args=(Param("request"),))
    def approve(args: Args, ctx: CommandContext) -> Reply:
        """Approve a pending request; it then runs once."""
        decided = approvals.decide(ctx.deps, ctx.principal, parse_approval_id(args["request"]), approve=True)
        # the same card every copy of the request now shows
        return approval_cards.card(ctx.deps, decided)

    @registry.command("deny", permission=Perm.APPROVAL_DECIDE,
                      args=(Param("request"), Param("reason", required=False, rest=True)))
    def deny(args: Args, ctx: CommandContext) -> Reply:
        """Deny a pending request, optionally saying why."""
        note = approvals.parse_decision_note(args["reason"])
        decided = approvals.decide(ctx.deps, ctx.principal, parse_approval_id(args["request"]), approve=False,
                                   note=note)
        return approval_cards.card(ctx.deps, decided)

    @registry.command("approval list", permission=Perm.VM_READ, flags=(Param("all", bool),))
    def approval_list(args: Args, ctx: CommandContext) -> Reply:
        """Pending approval requests of your companies (--all: decided ones too)."""
        found = approvals.list_requests(ctx.deps, ctx.principal, include_decided=bool(args["all"]))
        if not found:
            return Reply(text="no approval requests" + ("" if args["all"] else " pending"))
        now = ctx.deps.clock.now()
        rows = tuple(
            (show_approval(a.id), a.state.value, a.action, a.target.get("label") or approval_cards.describe(a.target),
             timefmt.relative(a.expires_at, now=now))
            for a in found
        )
        return Reply(title="Approval requests",
                     table=Table(columns=("request", "state", "action", "target", "expires"), rows=rows))

    @registry.command("approval channel", permission=Perm.VM_READ)
    def approval_channel(args: Args, ctx: CommandContext) -> Reply:
        """Your companies' approvers channels, and whether pvebot can post there yet."""
        found = channels.approvers_channels(ctx.deps.uow_factory, ctx.principal)
        if not found:
            return Reply(text="no approvers channel is set; approval cards go only to whoever asked")
        rows = tuple(
            (company.slug, resolution.name, "ready" if not resolution.waiting else f"waiting: {resolution.problem}")
            for company, resolution in found
        )
        return Reply(title="Approvers channels", table=Table(columns=("company", "channel", "state"), rows=rows))
