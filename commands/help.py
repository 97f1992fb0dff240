"""``help`` and ``whoami``."""

from __future__ import annotations

from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Field, Reply, Table
from core.errors import NotFound
from core.model import Company
from core.principal import Scope
from core.services import approvals


def register(registry: CommandRegistry) -> None:
    @registry.command("help", permission=None, args=(Param("group", required=False),))
    def help_(args: Args, ctx: CommandContext) -> Reply:
        """List the commands your role allows, or those of one group."""
        group = args["group"]
        visible = [c for c in ctx.registry if c.visible_to(ctx.principal)]
        if group:
            visible = [c for c in visible if c.group == group.lower() or c.name == group.lower()]
            if not visible:
                raise NotFound(f"no command group '{group[:30]}' for your role. Type 'help' for the list.")
        company = _company(ctx)
        rows = tuple((c.usage, c.summary + (" (needs approval)" if c.operation is not None and
                                           approvals.needs_approval(company, c.operation) else ""))
                     for c in visible)
        return Reply(
            title="pvebot commands" + (f": {group}" if group else ""),
            table=Table(columns=("command", "what it does"), rows=rows),
            footer="A VM is named by VMID, by name, or as cluster/vmid.",
        )

    @registry.command("whoami", permission=None)
    def whoami(args: Args, ctx: CommandContext) -> Reply:
        """Who pvebot thinks you are, your role and your companies."""
        p = ctx.principal
        with ctx.deps.uow_factory(p.scope) as uow:
            companies = [c.slug for c in uow.companies.list()]
        with ctx.deps.uow_factory(Scope.everything()) as uow:
            home = uow.companies.get(p.company_id) if p.company_id is not None else None
        scope = "every company" if p.scope.unrestricted else ", ".join(companies) or "none"
        return Reply(
            title=f"{p.name} <{p.email}>",
            fields=(
                Field("Role", p.role.value),
                Field("Company", home.name if home else "—"),
                Field("Sees", scope),
                Field("Chat", f"{ctx.conversation.platform}"),
            ),
        )


def _company(ctx: CommandContext) -> Company | None:
    """The caller's own company, whose approval policy the hints follow (none: every action waits)."""
    if ctx.principal.company_id is None:
        return None
    with ctx.deps.uow_factory(Scope.everything()) as uow:
        return uow.companies.get(ctx.principal.company_id)
