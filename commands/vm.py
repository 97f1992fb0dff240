"""``vm …``: list, status, power actions, create and delete."""

from __future__ import annotations

import shlex

from commands.common import human_bytes, human_duration, outcome_reply
from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Action, Answer, Field, Reply, Severity, Table
from core.errors import InvalidArguments
from core.ids import show_job
from core.rbac import Perm
from core.services import catalog, inventory, vms

PAGE_SIZE = 20
STATUSES = ("running", "stopped", "paused", "suspended")
REASON = Param("reason", help="why (shown to the approver)")

POWER_VERBS = ("start", "shutdown", "reboot", "suspend", "resume", "stop", "reset", "delete")


def register(registry: CommandRegistry) -> None:
    @registry.command(
        "vm list",
        permission=Perm.VM_READ,
        flags=(Param("cluster"), Param("status"), Param("search"), Param("page", int), Param("refresh", bool)),
    )
    def vm_list(args: Args, ctx: CommandContext) -> Reply:
        """List the VMs you can see, sorted by name, 20 a page."""
        status = args["status"]
        if status and status.lower() not in STATUSES:
            raise InvalidArguments(f"--status is one of {', '.join(STATUSES)}")
        view = inventory.view(ctx.deps, ctx.principal, refresh=bool(args["refresh"]), cluster=args["cluster"])
        guests = view.guests
        if status:
            guests = [o for o in guests if o.guest.status == status.lower()]
        if args["search"]:
            needle = args["search"].lower()
            guests = [o for o in guests if needle in o.guest.name.lower() or needle in ";".join(o.guest.tags).lower()
                      or needle == str(o.guest.vmid)]
        pages = max(1, -(-len(guests) // PAGE_SIZE))
        page = args.get("page", 1)
        if not 1 <= page <= pages:
            raise InvalidArguments(f"--page is from 1 to {pages}")
        shown = guests[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        many_companies = len({o.company_id for o in view.guests}) > 1
        columns = ("vmid", "name", "status", "node", "cluster") + (("company",) if many_companies else ()) + (
            "cpu", "memory")
        rows = tuple(
            (str(o.guest.vmid), o.guest.name, o.guest.status, o.guest.node, o.cluster.name)
            + ((o.company.slug if o.company else "—",) if many_companies else ())
            + (str(o.guest.maxcpu), human_bytes(o.guest.maxmem))
            for o in shown
        )
        running = sum(1 for o in guests if o.guest.status == "running")
        actions = []
        base = _list_command(args)
        if page > 1:
            actions.append(Action("◀ Previous", f"{base} --page {page - 1}".strip()))
        if page < pages:
            actions.append(Action("Next ▶", f"{base} --page {page + 1}".strip()))
        missing = "".join(f"\n⚠️ not shown: {message}" for message in view.unreachable.values())
        if not guests:
            empty = "no VMs match" if (status or args["search"]) else "you have no VMs yet"
            return Reply(text=empty + missing, severity=Severity.WARNING if missing else Severity.INFO)
        return Reply(
            title=f"VMs ({len(guests)}, {running} running)",
            table=Table(columns=columns, rows=rows),
            footer=f"page {page} of {pages}{missing}",
            severity=Severity.WARNING if missing else Severity.INFO,
            actions=tuple(actions),
        )

    @registry.command("vm status", permission=Perm.VM_READ, args=(Param("vm"),))
    def vm_status(args: Args, ctx: CommandContext) -> Reply:
        """State, node, uptime, CPU, memory, disk, IPs, tags and last task of a VM."""
        owned, detail, last = vms.status(ctx.deps, ctx.principal, args["vm"])
        g = detail.guest
        fields = [
            Field("State", g.status + (f" (lock: {g.lock})" if g.lock else "")),
            Field("Node", f"{g.node} ({owned.cluster.name})"),
            Field("Type", g.kind),
            Field("Uptime", human_duration(g.uptime) if g.status == "running" else "—"),
            Field("CPU", f"{g.cpu * 100:.0f}% of {g.maxcpu} core(s)"),
            Field("Memory", f"{human_bytes(g.mem)} of {human_bytes(g.maxmem)}"),
            Field("Disk", human_bytes(g.maxdisk)),
            Field("IPs", ", ".join(detail.ips) or "unknown (no guest agent answer)"),
            Field("Tags", ", ".join(g.tags) or "—"),
        ]
        if detail.pending:
            fields.append(Field("Pending", ", ".join(f"{k}={v}" for k, v in sorted(detail.pending.items()))
                                + " (applies at next start)"))
        if last is not None:
            fields.append(Field("Last task", f"{show_job(last.id)} {last.summary}: {last.state.value}"))
        return Reply(title=f"{g.name} ({owned.cluster.name}/{g.vmid})", fields=tuple(fields))

    for verb in POWER_VERBS:
        # permission and help line come from the operation; a destructive one takes a reason for the approver
        op = catalog.get(f"vm.{verb}")
        registry.command(f"vm {verb}", operation=op.name, args=(Param("vm"),),
                         flags=(REASON,) if op.perm is Perm.VM_DESTROY else ())(vm_operate)

    @registry.command(
        "vm create",
        operation="vm.create",
        args=(Param("name"),),
        flags=(Param("template"), Param("cores", int), Param("memory"), Param("disk"), Param("cluster"), Param("net")),
        usage="vm create <name> --template T [--cores N] [--memory 4G] [--disk +10G] [--cluster C] [--net RANGE]",
    )
    def vm_create(args: Args, ctx: CommandContext) -> Answer:
        """Create a VM by cloning a template into your company's pool (quota-checked)."""
        if not args["template"]:
            raise InvalidArguments("--template is required. Usage: vm create <name> --template T")
        memory = vms.parse_size_mb(args["memory"], what="memory") if args["memory"] else None
        outcome = vms.create(
            ctx.deps, ctx.principal, name=args["name"], template=args["template"], cores=args["cores"],
            memory_mb=memory, disk=args["disk"], cluster=args["cluster"], conversation=ctx.conversation,
            request_id=ctx.request_id, net=args["net"],
        )
        return outcome_reply(ctx, outcome, f"create {args['name']}")


def _list_command(args: Args) -> str:
    parts = ["vm list"]
    for flag in ("cluster", "status", "search"):
        if args[flag]:
            parts.append(f"--{flag} {shlex.quote(str(args[flag]))}")
    return " ".join(parts)


def vm_operate(args: Args, ctx: CommandContext) -> Answer:
    """Run the operation the command names (``vm stop`` runs ``vm.stop``) on one VM."""
    verb = ctx.command.split(" ", 1)[1]
    outcome = vms.operate(
        ctx.deps, ctx.principal, action=f"vm.{verb}", ref=args["vm"], reason=args["reason"] or "",
        conversation=ctx.conversation, request_id=ctx.request_id,
    )
    return outcome_reply(ctx, outcome, f"vm {verb} {args['vm']}")
