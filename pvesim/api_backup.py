"""Backups as Proxmox runs them: vzdump, storage content, backup jobs, schedules and the task history.

vzdump backs up only the guests local to the node asked and answers ``OK`` without a task when there
are none; a task's id is the VMID for one guest and empty for several. Scheduled runs (started by
:func:`run_job`, as pvescheduler does) are ``root@pam`` tasks. Retention (``prune-backups``) runs
after each backup and never removes a protected backup, which does not count towards it either.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

from pvesim import api_notify, calendar
from pvesim.context import Call, Listing, SimContext, render_bytes, route
from pvesim.propstring import parse_property_string
from pvesim.state import ApiError, SimBackup, SimGuest
from pvesim.tasks import SimTask, TaskFailed

KEEP_ORDER = ("keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")
PERIOD = {
    "keep-last": "%Y%m%d%H%M%S-%f",
    "keep-hourly": "%Y%m%d%H",
    "keep-daily": "%Y%m%d",
    "keep-weekly": "%G%V",
    "keep-monthly": "%Y%m",
    "keep-yearly": "%Y",
}


def _vmids(text: str) -> list[int]:
    return [int(v) for v in text.replace(";", ",").replace(" ", ",").split(",") if v]


def select_local(ctx: SimContext, *, node: str, options: dict[str, str]) -> list[SimGuest]:
    """The guests of ``node`` that vzdump's selection (vmid list, pool, all with exclude) takes."""
    guests = [g for g in ctx.state.guests.values() if g.node == node and not g.template]
    if options.get("vmid"):
        wanted = set(_vmids(options["vmid"]))
        return sorted((g for g in guests if g.vmid in wanted), key=lambda g: g.vmid)
    if options.get("pool"):
        return sorted((g for g in guests if g.pool == options["pool"]), key=lambda g: g.vmid)
    if options.get("all") == "1" or options.get("exclude"):
        excluded = set(_vmids(options.get("exclude", "")))
        return sorted((g for g in guests if g.vmid not in excluded), key=lambda g: g.vmid)
    return []


def start_vzdump(ctx: SimContext, *, node: str, options: dict[str, str], user: str, job_id: str | None = None) -> str:
    """Start one vzdump task for the local guests (call with ``state.lock`` held, on the server loop)."""
    storage_name = options.get("storage", "local")
    storage = ctx.state.storage(storage_name, node=node)
    if "backup" not in storage.content:
        raise ApiError(500, f"storage '{storage_name}' does not support backups")
    local = select_local(ctx, node=node, options=options)
    if not local:
        # nothing of this to back up here: PVE answers without starting a task
        return "OK"
    mode = options.get("mode", "snapshot")
    prune = _retention(options.get("prune-backups"))
    args = " ".join(f"--{k} {v}" for k, v in sorted(options.items()) if k not in ("vmid", "prune-backups"))
    selection = options.get("vmid", "").replace(",", " ") or ("--all 1" if options.get("all") == "1" else "")

    async def work(task: SimTask) -> None:
        errors = warnings = 0
        table: list[tuple[SimGuest, bool]] = []
        await ctx.tasks.progress(task, [f"INFO: starting new backup job: vzdump {selection} {args}".replace("  ", " ")])
        for guest in local:
            outcome = ctx.state.backup_outcomes.get(guest.vmid)
            lines, ok = _guest_lines(guest, task=task, storage=storage_name, mode=mode, outcome=outcome)
            await ctx.tasks.progress(task, lines)
            table.append((guest, ok))
            if not ok:
                errors += 1
                continue
            warnings += 1 if outcome and outcome[0] == "warning" else 0
            with ctx.state.lock:
                _store(ctx, guest, task=task, storage=storage_name, options=options)
                if prune:
                    _prune(ctx, storage=storage_name, vmid=guest.vmid, keep=prune)
        await ctx.tasks.progress(task, [f"INFO: Backup job finished {'with errors' if errors else 'successfully'}"])
        # vzdump notifies from inside the task, before the task has ended
        _notify(ctx, node=node, task=task, table=table, options=options, job_id=job_id)
        if errors:
            raise TaskFailed("job errors")
        if warnings:
            raise TaskFailed(f"WARNINGS: {warnings}")

    task_id = str(local[0].vmid) if len(local) == 1 else ""
    return ctx.tasks.start(node=node, type_="vzdump", id_=task_id, user=user, work=work,
                           guest=local[0] if len(local) == 1 else None, config_lock="backup")


def _notify(ctx: SimContext, *, node: str, task: SimTask, table: list[tuple[SimGuest, bool]],
            options: dict[str, str], job_id: str | None) -> None:
    """vzdump's ``send_notification``: one per node and run; legacy mail instead, skipping matchers and
    targets, with ``notification-mode=legacy-sendmail``, or ``auto`` (the default) when ``mailto`` is set."""
    mode = options.get("notification-mode", "auto")
    if mode == "legacy-sendmail" or (mode == "auto" and options.get("mailto")):
        return
    failed = [g for g, ok in table if not ok]
    status = "backup successful" if not failed else "backup failed"
    rows = [f"{g.vmid:<5} {g.name:<15} {'ok' if ok else 'err':<6} 00:00:01" for g, ok in table]
    message = "\n".join(["Details", "=======", "VMID  Name            Status Time", *rows, "",
                          "Logs", "====", *task.log])
    fields = {"type": "vzdump", "hostname": node, **({"job-id": job_id} if job_id else {})}
    with ctx.state.lock:
        api_notify.notify(ctx, severity="error" if failed else "info",
                          title=f"vzdump backup status ({node}.lab.example): {status} ", message=message,
                          fields=fields)


def _guest_lines(
    guest: SimGuest, *, task: SimTask, storage: str, mode: str, outcome: tuple[str, str] | None
) -> tuple[list[str], bool]:
    ext = "vma.zst" if guest.kind == "qemu" else "tar.zst"
    stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime(task.starttime))
    lines = [
        f"INFO: Starting Backup of VM {guest.vmid} ({guest.kind})",
        f"INFO: Backup started at {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(task.starttime))}",
        f"INFO: status = {guest.status}",
        f"INFO: backup mode: {mode}",
        f"INFO: creating vzdump archive '/mnt/pve/{storage}/dump/vzdump-{guest.kind}-{guest.vmid}-{stamp}.{ext}'",
    ]
    if outcome and outcome[0] == "error":
        return [*lines, f"ERROR: Backup of VM {guest.vmid} failed - {outcome[1]}"], False
    total = guest.disk_bytes
    if guest.kind == "qemu":
        lines += [
            f"INFO: {pct:3d}% ({render_bytes(total * pct // 100)} of {render_bytes(total)}) in {i}s, "
            "read: 341.3 MiB/s, write: 280.0 MiB/s"
            for i, pct in enumerate(range(0, 101, 25))
        ]
    else:
        lines += ["INFO: including mount point rootfs ('/') in backup", f"INFO: Total bytes written: {total // 4}"]
    if outcome and outcome[0] == "warning":
        lines.append(f"WARN: {outcome[1]}")
    lines += [f"INFO: archive file size: {render_bytes(max(total // 20, 1024))}",
              f"INFO: Finished Backup of VM {guest.vmid} (00:00:01)"]
    return lines, True


def _store(ctx: SimContext, guest: SimGuest, *, task: SimTask, storage: str, options: dict[str, str]) -> None:
    ext = "vma.zst" if guest.kind == "qemu" else "tar.zst"
    ctime = task.starttime
    while True:  # two backups of a guest within a second: the second one a second later, like a retry
        stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime(ctime))
        volid = f"{storage}:backup/vzdump-{guest.kind}-{guest.vmid}-{stamp}.{ext}"
        if volid not in ctx.state.backups:
            break
        ctime += 1
    template = options.get("notes-template", "")
    notes = (template.replace("{{guestname}}", guest.name).replace("{{vmid}}", str(guest.vmid))
             .replace("{{node}}", guest.node).replace("{{cluster}}", "lab"))
    ctx.state.backups[volid] = SimBackup(
        volid=volid, storage=storage, node=guest.node, vmid=guest.vmid, kind=guest.kind, ctime=ctime,
        size=max(guest.disk_bytes // 20, 1024), notes=notes, config=copy.deepcopy(guest.config), name=guest.name,
        protected=options.get("protected") == "1",
    )


def _retention(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    props = parse_property_string(text)
    if props.get("keep-all") in ("1", "yes", "on", "true"):
        return None
    return {k: int(v) for k, v in props.items() if k in KEEP_ORDER}


def prune_marks(backups: list[SimBackup], keep: dict[str, int]) -> dict[str, str]:
    """keep | remove | protected for each backup, the way proxmox's prune selection marks them."""
    marks: dict[str, str] = {}
    newest_first = sorted(backups, key=lambda b: b.ctime, reverse=True)
    for option in KEEP_ORDER:
        count = keep.get(option, 0)
        if not count:
            continue
        kept_periods = {datetime.fromtimestamp(b.ctime, UTC).strftime(PERIOD[option])
                        for b in newest_first if marks.get(b.volid) == "keep"}
        chosen: set[str] = set()
        for b in newest_first:
            if b.volid in marks:
                continue
            if b.protected:
                marks[b.volid] = "protected"
                continue
            period = datetime.fromtimestamp(b.ctime, UTC).strftime(PERIOD[option])
            if option == "keep-last":
                period = b.volid
            if period in kept_periods or period in chosen:
                continue
            if len(chosen) >= count:
                break
            chosen.add(period)
            marks[b.volid] = "keep"
    for b in newest_first:
        marks.setdefault(b.volid, "protected" if b.protected else "remove")
    return marks


def _prune(ctx: SimContext, *, storage: str, vmid: int, keep: dict[str, int]) -> None:
    backups = [b for b in ctx.state.backups.values() if b.storage == storage and b.vmid == vmid]
    for volid, mark in prune_marks(backups, keep).items():
        if mark == "remove":
            del ctx.state.backups[volid]


@route("POST", "/nodes/{node}/vzdump")
async def vzdump(ctx: SimContext, call: Call) -> Any:
    options = dict(call.params)
    if ("notes-template" in options or "protected" in options) and "storage" not in options:
        raise ApiError(400, "Parameter verification failed.",
                       errors={"storage": "parameter is required when using 'notes-template' or 'protected'"})
    if "job-id" in options and call.user != "root@pam":
        raise ApiError(403, "Permission check failed (job-id, root@pam only)")
    with ctx.state.lock:
        ctx.state.node(call.node)
        return start_vzdump(ctx, node=call.node, options=options, user=call.user)


# ---- storage content -------------------------------------------------------------------


def _row(b: SimBackup) -> dict[str, Any]:
    row: dict[str, Any] = {"volid": b.volid, "content": "backup", "format": b.volid.split(".", 1)[1], "size": b.size,
                           "ctime": b.ctime, "vmid": b.vmid, "subtype": b.kind}
    if b.notes:
        row["notes"] = b.notes.splitlines()[0]
    if b.protected:
        row["protected"] = 1
    return row


@route("GET", "/nodes/{node}/storage/{storage}/content")
async def storage_content(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        ctx.state.node(call.node)
        storage = ctx.state.storage(call.path_params["storage"], node=call.node)
        if call.params.get("content", "backup") != "backup":
            return []
        vmid = int(call.params["vmid"]) if "vmid" in call.params else None
        return [_row(b) for b in ctx.state.backups.values()
                if b.storage == storage.name and (storage.shared or b.node == call.node)
                and (vmid is None or b.vmid == vmid)]


def _volume(ctx: SimContext, call: Call) -> SimBackup:
    ctx.state.node(call.node)
    storage = ctx.state.storage(call.path_params["storage"], node=call.node)
    volid = call.path_params["volume"]
    if ":" not in volid:
        volid = f"{storage.name}:{volid}"
    found = ctx.state.backups.get(volid)
    if found is None or found.storage != storage.name or (not storage.shared and found.node != call.node):
        raise ApiError(500, f"volume '{volid}' does not exist")
    return found


@route("PUT", "/nodes/{node}/storage/{storage}/content/{volume}")
async def update_volume(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        backup = _volume(ctx, call)
        if "notes" in call.params:
            backup.notes = call.params["notes"]
        if "protected" in call.params:
            backup.protected = call.flag("protected")
    return None


@route("DELETE", "/nodes/{node}/storage/{storage}/content/{volume}")
async def delete_volume(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        backup = _volume(ctx, call)

    async def work(task: SimTask) -> None:
        await ctx.tasks.progress(task, [f"removing volume '{backup.volid}'"])
        with ctx.state.lock:
            if backup.protected:
                volname = backup.volid.split(":", 1)[1]
                raise TaskFailed(f"cannot remove protected volume '{volname}' on '{backup.storage}'")
            ctx.state.backups.pop(backup.volid, None)

    with ctx.state.lock:
        return ctx.tasks.start(node=call.node, type_="imgdel", id_="", user=call.user, work=work)


# ---- backup jobs (/etc/pve/jobs.cfg) ---------------------------------------------------

JOB_META = ("schedule", "enabled", "comment", "repeat-missed", "node", "id")


def _cfs_error(reason: str) -> ApiError:
    return ApiError(500, f"error during cfs-locked 'file-jobs_cfg' operation: {reason}")


def _job_row(job_id: str, options: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": job_id, "type": "vzdump", **options}
    for key in ("enabled", "all", "protected", "repeat-missed"):
        if key in row:
            row[key] = int(row[key])
    if row.get("enabled", 1):
        runs = calendar.next_runs(calendar.parse(options["schedule"]), after=datetime.now(UTC), count=1)
        if runs:
            row["next-run"] = int(runs[0].timestamp())
    return row


@route("GET", "/cluster/backup")
async def list_jobs(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        return [_job_row(i, o) for i, o in sorted(ctx.state.backup_jobs.items())]


@route("GET", "/cluster/backup/{id}")
async def get_job(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        found = ctx.state.backup_jobs.get(call.path_params["id"])
        if found is None:
            raise ApiError(500, f"Job '{call.path_params['id']}' does not exist")
        return _job_row(call.path_params["id"], found)


def _check_job(options: dict[str, str]) -> None:
    calendar.parse(options.get("schedule", ""))
    if not (options.get("vmid") or options.get("pool") or options.get("all") == "1" or options.get("exclude")):
        raise ApiError(400, "Parameter verification failed.",
                       errors={"vmid": "at least one of vmid, pool or all is required"})
    if "prune-backups" in options:
        _retention(options["prune-backups"])


@route("POST", "/cluster/backup")
async def create_job(ctx: SimContext, call: Call) -> Any:
    options = dict(call.params)
    if "schedule" not in options:
        options["schedule"] = f"{options.pop('dow', '')} {options.pop('starttime', '00:00')}".strip()
    _check_job(options)
    with ctx.state.lock:
        job_id = options.pop("id", None) or f"backup-{len(ctx.state.backup_jobs) + 1:08x}-{int(time.time()) % 10**4}"
        if job_id in ctx.state.backup_jobs:
            raise _cfs_error(f"Job '{job_id}' already exists")
        ctx.state.backup_jobs[job_id] = options
    return None


@route("PUT", "/cluster/backup/{id}")
async def update_job(ctx: SimContext, call: Call) -> Any:
    job_id = call.path_params["id"]
    with ctx.state.lock:
        found = ctx.state.backup_jobs.get(job_id)
        if found is None:
            raise _cfs_error(f"no such vzdump job '{job_id}'")
        options = {**found, **{k: v for k, v in call.params.items() if k not in ("id", "delete")}}
        for key in [k for k in call.params.get("delete", "").replace(";", ",").split(",") if k]:
            options.pop(key, None)
        # the selection is one of vmid, pool or all: setting one drops the others
        for key in ("vmid", "pool", "all"):
            if key in call.params:
                for other in {"vmid", "pool", "all"} - {key}:
                    options.pop(other, None)
    _check_job(options)
    with ctx.state.lock:
        ctx.state.backup_jobs[job_id] = options
    return None


@route("DELETE", "/cluster/backup/{id}")
async def delete_job(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        if ctx.state.backup_jobs.pop(call.path_params["id"], None) is None:
            raise _cfs_error(f"job '{call.path_params['id']}' does not exist")
    return None


@route("GET", "/cluster/jobs/schedule-analyze")
async def schedule_analyze(ctx: SimContext, call: Call) -> Any:
    event = calendar.parse(call.params["schedule"])
    start = call.params.get("starttime")
    after = datetime.fromtimestamp(int(start), UTC) if start else datetime.now(UTC)
    runs = calendar.next_runs(event, after=after, count=int(call.params.get("iterations", "10")))
    return [{"timestamp": int(r.timestamp()), "utc": r.strftime("%Y-%m-%d %H:%M:%S")} for r in runs]


def run_job(ctx: SimContext, job_id: str) -> list[str]:
    """What pvescheduler does at a job's slot: vzdump on every node for its local guests, as root@pam.

    A disabled job (``enabled=0``) is skipped, as ``PVE::Jobs::run_jobs`` skips it: nothing starts.
    """
    with ctx.state.lock:
        job = ctx.state.backup_jobs[job_id]
        if job.get("enabled", "1") in ("0", 0):
            return []
        options = {k: v for k, v in job.items() if k not in JOB_META}
        upids = []
        for node in sorted(ctx.state.nodes.values(), key=lambda n: n.name):
            if node.online:
                answer = start_vzdump(ctx, node=node.name, options=options, user="root@pam", job_id=job_id)
                if answer != "OK":
                    upids.append(answer)
        return upids


# ---- task history ----------------------------------------------------------------------

STATUS_KIND = (("ok", lambda s: s == "OK"), ("warning", lambda s: s.startswith("WARNINGS:")))


def _status_kind(status: str) -> str:
    return next((kind for kind, test in STATUS_KIND if test(status)), "error")


@route("GET", "/nodes/{node}/tasks")
async def node_tasks(ctx: SimContext, call: Call) -> Any:
    p = call.params
    source = p.get("source", "archive")
    wanted = {s for s in p.get("statusfilter", "").replace(";", ",").split(",") if s}
    with ctx.state.lock:
        ctx.state.node(call.node)
        rows = []
        for task in sorted(ctx.tasks.tasks.values(), key=lambda t: (t.starttime, t.upid), reverse=True):
            if task.node != call.node or (task.running and source == "archive") or (
                    not task.running and source == "active"):
                continue
            if "typefilter" in p and task.type != p["typefilter"]:
                continue
            if "vmid" in p and task.id != p["vmid"]:
                continue  # a multi-guest vzdump has an empty id and is never found this way
            if "userfilter" in p and p["userfilter"].lower() not in task.user.lower():
                continue
            if "since" in p and task.starttime < int(p["since"]) or "until" in p and task.starttime > int(p["until"]):
                continue
            if not task.running:
                kind = _status_kind(task.exitstatus or "")
                if (wanted and kind not in wanted) or (call.flag("errors") and kind == "ok"):
                    continue
            row = task.status()
            row.pop("exitstatus", None)
            row.pop("status")
            if not task.running:
                row["status"], row["endtime"] = task.exitstatus, task.endtime
            rows.append(row)
    start, limit = int(p.get("start", "0")), int(p.get("limit", "50"))
    return Listing(rows[start : start + limit], total=len(rows))
