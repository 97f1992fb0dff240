"""``backup …``: back up now, list, restore, delete, protect; status and history; schedules."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from commands.common import human_bytes, human_duration, outcome_reply
from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Answer, Field, Reply, Severity, Table
from core.errors import InvalidArguments
from core.rbac import Perm
from core.services import backup_requests, backup_schedules, backups, requests

REASON = Param("reason", help="why (shown to the approver)")
RETENTION_FLAGS = tuple(Param(key, int) for key in backup_schedules.RETENTION if key != "keep-hourly")
SCHEDULE_FLAGS = (Param("when"), Param("vms"), Param("all", bool), Param("pool"), Param("cluster"), Param("storage"),
                  Param("mode"), *RETENTION_FLAGS)
SCHEDULE_USAGE = ('backup schedule {verb} <name> --when "daily 02:00" [--vms web-01,db-01 | --all [--pool P]] '
                  "[--cluster C] [--storage S] [--mode snapshot] "
                  "[--keep-last N --keep-daily N --keep-weekly N --keep-monthly N --keep-yearly N]")
_SINCE = re.compile(r"^(\d{1,4})([hdw])$")


def register(registry: CommandRegistry) -> None:
    registry.command("backup now", operation="backup.now", args=(Param("vm"),),
                     flags=(Param("storage"), Param("mode"), Param("note"), Param("protect", bool)),
                     usage="backup now <vm> [--storage S] [--mode snapshot|suspend|stop] [--note TEXT] [--protect]",
                     )(backup_now)
    registry.command("backup list", permission=Perm.BACKUP_READ, args=(Param("vm"),),
                     flags=(Param("storage"),))(backup_list)
    registry.command("backup restore", operation="backup.restore", args=(Param("vm"), Param("backup")),
                     flags=(Param("as-new", help="restore as a new VM of this name"), REASON),
                     usage="backup restore <vm> <backup> [--as-new NAME] [--reason TEXT]")(backup_restore)
    for verb in ("delete", "protect", "unprotect"):
        registry.command(f"backup {verb}", operation=f"backup.{verb}", args=(Param("vm"), Param("backup")),
                         flags=(REASON,) if verb == "delete" else ())(backup_on)
    registry.command("backup status", permission=Perm.BACKUP_READ, flags=(Param("vm"),))(backup_status)
    registry.command("backup history", permission=Perm.BACKUP_READ,
                     flags=(Param("vm"), Param("since")))(backup_history)
    registry.command("backup schedule list", permission=Perm.BACKUP_READ)(schedule_list)
    registry.command("backup schedule create", permission=Perm.BACKUP_SCHEDULE, args=(Param("name"),),
                     flags=SCHEDULE_FLAGS, usage=SCHEDULE_USAGE.format(verb="create"))(schedule_create)
    registry.command("backup schedule edit", permission=Perm.BACKUP_SCHEDULE, args=(Param("name"),),
                     flags=SCHEDULE_FLAGS, usage=SCHEDULE_USAGE.format(verb="edit"))(schedule_edit)
    registry.command("backup schedule delete", operation="backup.schedule.delete", args=(Param("name"),),
                     flags=(REASON,))(schedule_operate)
    registry.command("backup schedule run", operation="backup.schedule.run", args=(Param("name"),))(schedule_operate)


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def backup_now(args: Args, ctx: CommandContext) -> Answer:
    """Back a VM up now."""
    outcome = backup_requests.now(
        ctx.deps, ctx.principal, vm=args["vm"], storage=args["storage"], mode=args["mode"] or "snapshot",
        note=args["note"], protect=bool(args["protect"]), conversation=ctx.conversation, request_id=ctx.request_id,
    )
    return outcome_reply(ctx, outcome, f"backup now {args['vm']}")


def backup_list(args: Args, ctx: CommandContext) -> Reply:
    """List a VM's backups, newest first: time, size, storage, notes, protection and verification."""
    listing = backups.for_vm(ctx.deps, ctx.principal, args["vm"], storage=args["storage"])
    if not listing.backups:
        return Reply(text=f"{listing.label} has no backups")
    rows = tuple(
        (o.label, _when(o.backup.ctime), human_bytes(o.backup.size), o.backup.storage, o.backup.notes[:40] or "—",
         "🔒" if o.backup.protected else "—", o.backup.verification or "—")
        for o in listing.backups
    )
    return Reply(title=f"Backups of {listing.label} ({len(rows)})",
                 table=Table(columns=("backup", "time (UTC)", "size", "storage", "notes", "protected", "verified"),
                             rows=rows),
                 footer="name one by its label, by 'latest' or by its volume id")


def backup_restore(args: Args, ctx: CommandContext) -> Answer:
    outcome = backup_requests.restore(
        ctx.deps, ctx.principal, vm=args["vm"], backup=args["backup"], as_new=args["as-new"],
        reason=args["reason"] or "", conversation=ctx.conversation, request_id=ctx.request_id,
    )
    what = f"backup restore {args['vm']} {args['backup']}" + (f" as {args['as-new']}" if args["as-new"] else "")
    return outcome_reply(ctx, outcome, what)


def backup_on(args: Args, ctx: CommandContext) -> Answer:
    """Delete, protect or unprotect one backup: the operation the command names."""
    verb = ctx.command.split(" ", 1)[1]
    outcome = backup_requests.on_backup(
        ctx.deps, ctx.principal, action=f"backup.{verb}", vm=args["vm"], backup=args["backup"],
        reason=args["reason"] or "", conversation=ctx.conversation, request_id=ctx.request_id,
    )
    return outcome_reply(ctx, outcome, f"backup {verb} {args['vm']} {args['backup']}")


def backup_status(args: Args, ctx: CommandContext) -> Reply:
    """Each VM's last backup, its age and size; flags VMs never backed up or older than your limit."""
    states, limit = backups.status(ctx.deps, ctx.principal, vm=args["vm"])
    if not states:
        return Reply(text="you have no VMs yet")
    rows = tuple(
        (s.guest.guest.name, s.guest.cluster.name,
         "—" if s.last is None else _when(s.last.backup.ctime),
         "never" if s.age_hours is None else human_duration(int(s.age_hours * 3600)),
         "—" if s.last is None else human_bytes(s.last.backup.size),
         "⚠️ never backed up" if s.last is None else ("⚠️ too old" if s.stale else "ok"))
        for s in states
    )
    flagged = sum(1 for s in states if s.stale)
    return Reply(title=f"Backup status ({len(states)} VMs, {flagged} flagged)",
                 table=Table(columns=("vm", "cluster", "last backup (UTC)", "age", "size", "state"), rows=rows),
                 footer=f"flagged: no backup, or none within {limit} h",
                 severity=Severity.WARNING if flagged else Severity.SUCCESS)


def _since(text: str | None) -> int:
    if not text:
        return 7 * 86400
    m = _SINCE.match(text.strip().lower())
    if not m:
        raise InvalidArguments("--since looks like 24h, 7d or 2w")
    return int(m.group(1)) * {"h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]


def backup_history(args: Args, ctx: CommandContext) -> Reply:
    """Outcomes of backup runs touching your VMs (scheduled ones too): ok, warnings, failed and why."""
    runs = backups.history(ctx.deps, ctx.principal, vm=args["vm"], since_seconds=_since(args["since"]))
    if not runs:
        return Reply(text=f"no backup runs of your VMs since {args['since'] or '7d'} ago")
    mark = {"ok": "✅ ok", "warnings": "⚠️ ok with warnings", "failed": "❌ failed"}
    rows = tuple((_when(r.started), r.guest.guest.name, mark[r.outcome], r.reason[:80] or "—",
                  _by(r)) for r in runs[:50])
    failed = sum(1 for r in runs if r.outcome == "failed")
    return Reply(title=f"Backup runs ({len(runs)}, {failed} failed)",
                 table=Table(columns=("started (UTC)", "vm", "outcome", "reason", "by"), rows=rows),
                 severity=Severity.WARNING if failed else Severity.INFO)


def _by(run: backups.RunOutcome) -> str:
    if run.asked_by is not None:
        return run.asked_by
    # pvescheduler runs a schedule's tasks as root@pam; anyone else is who Proxmox names
    return "scheduled" if run.user == "root@pam" else run.user


def schedule_list(args: Args, ctx: CommandContext) -> Reply:
    """List backup schedules: your company's (a super_admin sees every job, with its owner)."""
    found = backup_schedules.list_schedules(ctx.deps, ctx.principal)
    if not found:
        hint = "; create one with backup schedule create" if ctx.may_use("backup schedule create") else ""
        return Reply(text=f"no backup schedules yet{hint}")
    rows = tuple(
        (s.name, s.company.slug if s.company else "(not pvebot's)", s.job.schedule, s.selection[:60],
         s.job.options.get("storage", "—"), s.job.options.get("prune-backups", "storage default"),
         "—" if s.job.next_run is None else _when(s.job.next_run), "yes" if s.job.enabled else "no")
        for s in found
    )
    return Reply(title=f"Backup schedules ({len(rows)})",
                 table=Table(columns=("name", "owner", "when", "VMs", "storage", "retention", "next run (UTC)",
                                      "enabled"), rows=rows))


def _request(args: Args) -> backup_schedules.ScheduleRequest:
    if args["all"] and args["vms"]:
        raise InvalidArguments("give --vms or --all, not both")
    retention = {p.name: args[p.name] for p in RETENTION_FLAGS if args[p.name] is not None}
    if any(v < 0 for v in retention.values()):
        raise InvalidArguments("retention counts are 0 or more")
    vms = tuple(v.strip() for v in args["vms"].split(",")) if args["vms"] else None
    return backup_schedules.ScheduleRequest(when=args["when"], vms=vms, all=bool(args["all"]),
                                            storage=args["storage"], mode=args["mode"], retention=retention or None,
                                            cluster=args["cluster"], pool=args["pool"])


def _schedule_reply(verb: str, s: backup_schedules.Schedule) -> Reply:
    fields = (
        Field("Proxmox job", s.job.id),
        Field("When", f"{s.job.schedule} (Proxmox calendar event)"),
        Field("Next runs (UTC)", ", ".join(_when(t) for t in s.next_runs) or "—"),
        Field("VMs", s.selection),
        Field("Storage", s.job.options.get("storage", "—")),
        Field("Retention", s.job.options.get("prune-backups", "storage default")),
        Field("Notifications", s.job.options.get("notification-mode", "auto")),
    )
    # no icon in the title: the renderers put the severity's icon before it
    return Reply(title=f"schedule {s.name} {verb}", fields=fields, severity=Severity.SUCCESS)


def schedule_create(args: Args, ctx: CommandContext) -> Reply:
    """Create a backup schedule: one Proxmox backup job for your VMs, with retention."""
    s = backup_schedules.create(ctx.deps, ctx.principal, name=args["name"], req=_request(args))
    return _schedule_reply("created", s)


def schedule_edit(args: Args, ctx: CommandContext) -> Reply:
    """Change a backup schedule in place (only what you give)."""
    s = backup_schedules.edit(ctx.deps, ctx.principal, name=args["name"], req=_request(args))
    return _schedule_reply("changed", s)


def schedule_operate(args: Args, ctx: CommandContext) -> Answer:
    """Delete a schedule (after approval) or run it now: the operation the command names."""
    verb = ctx.command.rsplit(" ", 1)[1]
    outcome = requests.operate(ctx.deps, ctx.principal, action=f"backup.schedule.{verb}", ref=args["name"],
                               reason=args["reason"] or "", conversation=ctx.conversation, request_id=ctx.request_id)
    return outcome_reply(ctx, outcome, f"backup schedule {verb} {args['name']}")
