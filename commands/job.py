"""``job …``: status, list and cancel."""

from __future__ import annotations

from dataclasses import replace

from commands.registry import Args, CommandContext, CommandRegistry, Param
from core import timefmt
from core.chat import Field, Reply, Table
from core.ids import parse_job_id, show_job
from core.rbac import Perm
from core.services import jobs


def register(registry: CommandRegistry) -> None:
    @registry.command("job status", permission=Perm.JOB_READ, args=(Param("job"),))
    def job_status(args: Args, ctx: CommandContext) -> Reply:
        """Where a job is: state, progress, result, Proxmox task."""
        job = jobs.get(ctx.deps, ctx.principal, parse_job_id(args["job"]))
        now = ctx.deps.clock.now()
        live = jobs.render(job, now=now)
        fields = [
            Field("State", job.state.value),
            Field("Queued", timefmt.relative(job.created_at, now=now)),
            Field("Took" if job.state.finished else "Running for", jobs.elapsed(job, now=now)),
        ]
        if job.progress:
            fields.append(Field("Progress", job.progress))
        if job.result:
            fields.append(Field("Result", job.result))
        if job.upid:
            fields.append(Field("Proxmox task", job.upid))
        return Reply(title=live.title, text=live.text, severity=live.severity, fields=tuple(fields))

    @registry.command("job list", permission=Perm.JOB_READ, flags=(Param("active", bool),))
    def job_list(args: Args, ctx: CommandContext) -> Reply:
        """Recent jobs of your companies (--active: only queued and running)."""
        found = jobs.list_jobs(ctx.deps, ctx.principal, active_only=bool(args["active"]))
        if not found:
            return Reply(text="no jobs" + (" running" if args["active"] else " yet"))
        now = ctx.deps.clock.now()
        # what it is first; the id, for job status / job cancel, last
        rows = tuple((j.summary[:60], j.state.value, timefmt.stamp(j.created_at, now=now), show_job(j.id))
                     for j in found)
        return Reply(title="Jobs", table=Table(columns=("what", "state", "queued (UTC)", "job"), rows=rows))

    @registry.command("job cancel", permission=Perm.JOB_CANCEL, args=(Param("job"),))
    def job_cancel(args: Args, ctx: CommandContext) -> Reply:
        """Cancel a queued job, or stop a running one's Proxmox task."""
        job = jobs.cancel(ctx.deps, ctx.principal, parse_job_id(args["job"]))
        # the job's own card: a Cancel button pressed on the job's message has it replaced by this answer
        card = jobs.render(job, now=ctx.deps.clock.now())
        if job.state.finished:
            return card
        return replace(card, text=f"{card.text}\n⏳ asked to stop; this message will say when it has")
