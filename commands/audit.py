"""``audit``: the audit trail of your companies, for admins."""

from __future__ import annotations

from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Reply
from core.rbac import Perm
from core.services import audit


def register(registry: CommandRegistry) -> None:
    @registry.command("audit", permission=Perm.AUDIT_READ, flags=(Param("since"), Param("user")))
    def audit_(args: Args, ctx: CommandContext) -> Reply:
        """The latest audit events of your companies (--since 24h, --user EMAIL)."""
        since = audit.parse_since(args["since"], now=ctx.deps.clock.now()) if args["since"] else None
        with ctx.deps.uow_factory(ctx.principal.scope) as uow:
            events = audit.query(uow, ctx.principal, since=since, actor=args["user"], limit=30)
        if not events:
            return Reply(text="no audit events match")
        return Reply(title="Audit trail (latest 30)", text="\n".join(audit.describe(e)[:300] for e in events))
