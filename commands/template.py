"""``template list``: what ``vm create --template`` can clone for you."""

from __future__ import annotations

from commands.common import human_bytes
from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Reply, Severity, Table
from core.rbac import Perm
from core.services import templates

# qemu's ostype codes (pve-api: qemu config "ostype"); a container's ostype is already a distribution name
QEMU_OS = {
    "l26": "Linux", "l24": "Linux 2.4", "win11": "Windows 11/2022/2025", "win10": "Windows 10/2016/2019",
    "win8": "Windows 8/2012", "win7": "Windows 7/2008r2", "w2k8": "Windows Vista/2008", "wvista": "Windows Vista",
    "w2k3": "Windows 2003", "wxp": "Windows XP", "w2k": "Windows 2000", "solaris": "Solaris", "other": "other",
}


def register(registry: CommandRegistry) -> None:
    registry.command("template list", permission=Perm.VM_READ, flags=(Param("cluster"),))(template_list)


def template_list(args: Args, ctx: CommandContext) -> Reply:
    """List the templates you can clone with vm create, with OS and size."""
    found = templates.list_usable(ctx.deps, ctx.principal, cluster=args["cluster"])
    missing = "".join(f"\n⚠️ not shown: {message}" for message in found.unreachable.values())
    severity = Severity.WARNING if missing else Severity.INFO
    if not found.templates:
        return Reply(text="no templates you can clone" + missing, severity=severity)
    rows = tuple(
        (
            t.owned.guest.name + (" (shared)" if t.shared else ""),
            f"{t.owned.cluster.name}/{t.owned.guest.vmid}",
            _os(t.owned.guest.kind, t.ostype),
            str(t.owned.guest.maxcpu),
            human_bytes(t.owned.guest.maxmem),
            human_bytes(t.owned.guest.maxdisk),
        )
        for t in found.templates
    )
    more = f"{len(rows)} of {found.total} shown; narrow with --cluster. " if found.total > len(rows) else ""
    clone = "Clone one with: vm create <name> --template <name>" if ctx.may_use("vm create") else ""
    return Reply(
        title=f"Templates ({found.total})",
        table=Table(columns=("name", "cluster/vmid", "os", "cores", "memory", "disk"), rows=rows),
        footer=f"{more}{clone}{missing}".strip() or None,
        severity=severity,
    )


def _os(kind: str, ostype: str | None) -> str:
    if ostype is None:
        return kind
    if kind == "qemu":
        return QEMU_OS.get(ostype, ostype)
    return ostype
