"""``net …``, ``vlan list`` and ``ip …``: company IP ranges, VLANs, and addresses on VMs."""

from __future__ import annotations

from dataclasses import replace

from commands.common import outcome_reply
from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Answer, Reply, Severity, Table
from core.rbac import Perm
from core.services import ipam, network


def register(registry: CommandRegistry) -> None:
    registry.command("net list", permission=Perm.NET_READ)(net_list)
    registry.command("net show", permission=Perm.NET_READ, args=(Param("range"),))(net_show)
    registry.command("net audit", permission=Perm.NET_AUDIT)(net_audit)
    registry.command("vlan list", permission=Perm.NET_READ)(vlan_list)
    registry.command("ip assign", operation="ip.assign", args=(Param("vm"),),
                     flags=(Param("range", help="the range's name or network"), Param("ip"), Param("nic")),
                     usage="ip assign <vm> [--range R] [--ip A] [--nic net0]")(ip_assign)
    registry.command("ip release", operation="ip.release", args=(Param("vm"),),
                     flags=(Param("ip"), Param("reason", help="why (shown to the approver)")),
                     usage="ip release <vm> [--ip A] [--reason R]")(ip_release)


def net_list(args: Args, ctx: CommandContext) -> Reply:
    """Your company's IP ranges with their VLAN and how many addresses are used and free."""
    usage = ipam.ranges(ctx.deps, ctx.principal)
    if not usage:
        return Reply(text="your company has no IP ranges; ask your administrator")
    rows = tuple((u.range.name, u.cluster, u.range.cidr, u.range.gateway or "—", u.range.segment, str(u.used),
                  str(u.free)) for u in usage)
    return Reply(title=f"IP ranges ({len(usage)})",
                 table=Table(columns=("range", "cluster", "cidr", "gateway", "segment", "used", "free"), rows=rows))


def net_show(args: Args, ctx: CommandContext) -> Reply:
    """One range, by name or network (10.20.0.0/24): its settings and the addresses assigned from it."""
    usage, assigned = ipam.show(ctx.deps, ctx.principal, args["range"])
    r = usage.range
    head = (f"{r.cidr} on {usage.cluster}, {r.segment}, gateway {r.gateway or 'none'}, "
            f"DNS {', '.join(r.dns) or 'none'}{', search ' + r.search_domain if r.search_domain else ''}; "
            f"{usage.used} used, {usage.free} free")
    if r.reserved:
        head += f"; reserved {', '.join(r.reserved)}"
    if not assigned:
        return Reply(title=f"Range {r.name}", text=head + "\nno addresses assigned yet")
    rows = tuple((a.address, f"{usage.cluster}/{a.vmid}" if a.vmid is not None else "(being created)",
                  f"net{a.nic}", a.assigned_by, a.assigned_at.strftime("%Y-%m-%d %H:%M")) for a in assigned)
    return Reply(title=f"Range {r.name}", text=head,
                 table=Table(columns=("address", "vm", "nic", "by", "when (UTC)"), rows=rows))


def net_audit(args: Args, ctx: CommandContext) -> Reply:
    """Compare pvebot's assignments with your VMs' configs and list the drift."""
    drift, unreachable = network.audit(ctx.deps, ctx.principal)
    missing = "".join(f"\n⚠️ not checked: {why}" for why in unreachable)
    if not drift:
        return Reply(text="no drift: every VM's addresses and VLANs are what pvebot assigned" + missing,
                     severity=Severity.WARNING if missing else Severity.SUCCESS)
    rows = tuple((d.vm, f"net{d.nic}", d.problem) for d in drift)
    return Reply(title=f"Network drift ({len(drift)})", table=Table(columns=("vm", "nic", "problem"), rows=rows),
                 footer=missing.strip() or None, severity=Severity.WARNING)


def vlan_list(args: Args, ctx: CommandContext) -> Reply:
    """The VLANs your company's ranges and VMs use."""
    used = network.vlans(ctx.deps, ctx.principal)
    if not used:
        return Reply(text="no VLAN tags in use by your ranges or VMs")
    rows = tuple((str(v.vlan), ", ".join(v.ranges) or "—", ", ".join(v.vms) or "—") for v in used)
    return Reply(title=f"VLANs ({len(used)})", table=Table(columns=("vlan", "ranges", "vms"), rows=rows))


def ip_assign(args: Args, ctx: CommandContext) -> Answer:
    outcome, params = network.assign(
        ctx.deps, ctx.principal, vm=args["vm"], range_name=args["range"], address=args["ip"], nic=args["nic"],
        conversation=ctx.conversation, request_id=ctx.request_id,
    )
    answer = outcome_reply(ctx, outcome, f"ip assign {args['vm']}")
    if params.get("reboot") and outcome.created:
        note = f"\nthe VM runs: reboot it afterwards to take {params['address']}"
        answer = replace(answer, reply=replace(answer.reply, text=answer.reply.text + note))
    return answer


def ip_release(args: Args, ctx: CommandContext) -> Answer:
    outcome = network.release(
        ctx.deps, ctx.principal, vm=args["vm"], address=args["ip"], reason=args["reason"] or "",
        conversation=ctx.conversation, request_id=ctx.request_id,
    )
    return outcome_reply(ctx, outcome, f"ip release {args['vm']}")
