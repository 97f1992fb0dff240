"""``help`` and ``whoami``."""

from __future__ import annotations

from commands.registry import Args, CommandContext, CommandRegistry, CommandSpec, Param
from core.chat import Field, Reply, Section
from core.errors import NotFound
from core.model import Company
from core.principal import Scope
from core.services import approvals

# a group of at most this many commands is listed command by command in `help`
SHORT_GROUP = 3
FOOTER = "A VM is named by VMID, by name, or as cluster/vmid."


def register(registry: CommandRegistry) -> None:
    @registry.command("help", permission=None, args=(Param("group", required=False, rest=True),),
                      usage="help [<group> | <command>]")
    def help_(args: Args, ctx: CommandContext) -> Reply:
        """List the commands your role allows, or those of one group or command (also: <command> --help)."""
        visible = [c for c in ctx.registry if c.visible_to(ctx.principal)]
        company = _company(ctx)
        if args["group"]:
            # "backup", "backup schedule" or "backup schedule create": the commands under those words
            words = " ".join(args["group"].lower().split())
            visible = [c for c in visible if c.name == words or c.name.startswith(words + " ")]
            if not visible:
                raise NotFound(f"no command or group '{words[:40]}' for your role. Type 'help' for the list.")
            return Reply(
                title=f"pvebot commands: {words}",
                sections=(Section(words, tuple(_line(c, company) for c in visible)),),
                footer=FOOTER,
            )
        groups: dict[str, list[CommandSpec]] = {}
        for spec in visible:
            groups.setdefault(spec.group, []).append(spec)
        # a long group would make the list taller than a chat window: one line naming its commands,
        # and `help <group>` tells each one's usage
        long = [Field(name, " · ".join(c.name.split(" ", 1)[1] for c in specs))
                for name, specs in groups.items() if len(specs) > SHORT_GROUP]
        short = [_line(c, company) for specs in groups.values() if len(specs) <= SHORT_GROUP for c in specs]
        sections = []
        if long:
            sections.append(Section("Command groups: type help <group> for their usage", tuple(long)))
        if short:
            sections.append(Section("Commands" if long else "", tuple(short)))
        return Reply(title="pvebot commands", sections=tuple(sections), footer=FOOTER)

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


def _line(spec: CommandSpec, company: Company | None) -> Field:
    hint = " (needs approval)" if spec.operation is not None and approvals.needs_approval(company, spec.operation) \
        else ""
    return Field(spec.usage, spec.summary + hint)


def _company(ctx: CommandContext) -> Company | None:
    """The caller's own company, whose approval policy the hints follow (none: every action waits)."""
    if ctx.principal.company_id is None:
        return None
    with ctx.deps.uow_factory(Scope.everything()) as uow:
        return uow.companies.get(ctx.principal.company_id)
