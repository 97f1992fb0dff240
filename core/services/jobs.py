"""Jobs: Proxmox operations requested from chat, run once by a worker, reported as they move.

``submit`` records a job (idempotent per request id) and ``start`` queues it once the reply
that announced it is posted, so progress threads under that reply. ``run`` is the body a
worker executes: it re-checks who asked and what they may touch, follows every Proxmox task,
and edits one progress message (at most one edit per ``Deps.progress_interval``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core import rbac
from core.chat import ConversationRef, MessageRef, Reply, Severity
from core.errors import BotError, Conflict, DuplicateRequest, ExternalSystemError, NotFound, NotLinked
from core.ids import new_id, show_approval, show_job
from core.model import ApprovalState, GuestRef, Job, JobState, TaskRef, TaskStatus
from core.ports import Hypervisor, UnitOfWork
from core.principal import Principal, Scope
from core.services import audit, catalog, operations, targets
from core.services.deps import Deps
from core.services.operations import Target

log = logging.getLogger(__name__)
RUN_JOB = "jobs.run.run_job"  # the RQ entry point, by dotted path


def guest_ref(target: dict[str, Any]) -> GuestRef:
    return GuestRef(cluster=target["cluster"], node=target["node"], kind=target["kind"], vmid=int(target["vmid"]))


def submit(
    deps: Deps,
    principal: Principal,
    *,
    action: str,
    target: Target,
    params: dict[str, Any],
    conversation: ConversationRef,
    request_id: str,
    approval_id: str | None = None,
    summary: str | None = None,
    company_id: int | None = None,
) -> tuple[Job, bool]:
    """Record a job for ``action`` on ``target``; the same ``request_id`` gives back the same job.

    The target's record (for a guest, which guest it is) is what the job acts on: it refuses
    anything that took its place since. ``company_id`` defaults to the target's company (a
    template's company is the caller's).

    Returns:
        The job and whether it was created now (False: a re-delivery of a known request).

    Raises:
        PermissionDenied / NotFound: the principal may not run ``action`` on that company's guests.
    """
    op = catalog.get(action)
    company_id = company_id if company_id is not None else target.company_id
    if company_id is None:
        raise NotFound(f"{target.kind.value} not found")
    rbac.require(principal, op.perm, company_id, what=target.kind.value)
    with deps.uow_factory(principal.scope) as uow:
        existing = uow.jobs.by_request(request_id)
        if existing is not None:
            return existing, False
        now = deps.clock.now()
        job = Job(
            id=new_id(),
            request_id=request_id,
            company_id=company_id,
            actor_user_id=principal.user_id,
            action=action,
            target={**target.record, "target_kind": target.kind.value},
            params=params,
            state=JobState.QUEUED,
            created_at=now,
            conversation=conversation.to_dict(),
            summary=(summary or f"{op.verb} {target.label}")[:300],
            approval_id=approval_id,
        )
        try:
            uow.jobs.add(job)
            audit.record(uow, clock=deps.clock, actor=principal.actor, action=f"{action}", company_id=company_id,
                         target=target.label, outcome="queued", detail={"job": show_job(job.id)})
            uow.commit()
        except DuplicateRequest:
            # a concurrent delivery of the same request (a platform retrying a slow answer) stored it
            # first and the unique request id refused ours: it is a re-delivery after all
            uow.rollback()
            existing = uow.jobs.by_request(request_id)
            if existing is None:
                raise
            return existing, False
        return job, True


def start(deps: Deps, job_id: str, *, posted: MessageRef | None) -> None:
    """Queue a recorded job; its progress threads under ``posted`` (the reply that announced it)."""
    with deps.uow_factory(Scope.everything()) as uow:
        job = uow.jobs.get(job_id)
        if job is None or job.state is not JobState.QUEUED:
            return
        conversation = ConversationRef.from_dict(job.conversation)
        if posted is not None and conversation.thread is None:
            job.conversation = conversation.with_thread(posted.message_id).to_dict()
            uow.commit()
    # RQ gets a little longer than our own deadline, so that we report the timeout, not RQ
    deps.queue.enqueue(RUN_JOB, job_id=job_id, kwargs={"job_id": job_id}, timeout=deps.job_timeout + 60)


def get(deps: Deps, principal: Principal, job_id: str) -> Job:
    rbac.require(principal, rbac.Perm.JOB_READ)
    with deps.uow_factory(principal.scope) as uow:
        job = uow.jobs.get(job_id)
    if job is None:
        raise NotFound(f"{show_job(job_id)} not found")
    return job


def list_jobs(deps: Deps, principal: Principal, *, active_only: bool = False, limit: int = 20) -> list[Job]:
    rbac.require(principal, rbac.Perm.JOB_READ)
    states = [JobState.QUEUED, JobState.RUNNING] if active_only else None
    with deps.uow_factory(principal.scope) as uow:
        return uow.jobs.list(states=states, limit=limit)


def cancel(deps: Deps, principal: Principal, job_id: str) -> Job:
    """Cancel a queued job at once, or ask a running one to stop its Proxmox task."""
    job = get(deps, principal, job_id)
    rbac.require(principal, rbac.Perm.JOB_CANCEL, job.company_id, what=show_job(job_id))
    if job.state.finished:
        raise Conflict(f"{show_job(job_id)} already {job.state.value}")
    with deps.uow_factory(principal.scope) as uow:
        audit.record(uow, clock=deps.clock, actor=principal.actor, action="job.cancel", company_id=job.company_id,
                     target=show_job(job_id))
        uow.commit()
    if job.state is JobState.QUEUED:
        deps.queue.cancel(job_id)
        # only if no worker claimed it meanwhile; a claimed one is stopped like a running one below
        if _finish(deps, job, JobState.CANCELLED, f"cancelled by {principal.name}", expected=(JobState.QUEUED,)):
            _notify(deps, job)
            return job
    with deps.uow_factory(principal.scope) as uow:
        current = uow.jobs.get(job_id)
        assert current is not None
        if not current.state.finished:
            current.cancel_requested = True
            uow.commit()
        return current


# ---- the worker side -------------------------------------------------------------------


class _Cancelled(Exception):
    pass


@dataclass
class _Progress:
    """Edits a job's message, at most once per ``interval`` unless forced."""

    deps: Deps
    job: Job
    last_sent: float = 0.0

    def show(self, *, force: bool = False) -> None:
        now = self.deps.clock.monotonic()
        if force or now - self.last_sent >= self.deps.progress_interval:
            _notify(self.deps, self.job)
            self.last_sent = now


def _notify(deps: Deps, job: Job) -> None:
    """Post the job's message the first time, edit it afterwards; a chat outage never fails the job."""
    reply = render(job, now=deps.clock.now())
    try:
        if job.message_ref:
            deps.notifier.update(MessageRef.from_dict(job.message_ref), reply)
        elif job.conversation:
            posted = deps.notifier.post(ConversationRef.from_dict(job.conversation), reply)
            job.message_ref = posted.to_dict()
            with deps.uow_factory(Scope.everything()) as uow:
                stored = uow.jobs.get(job.id)
                if stored is not None:
                    stored.message_ref = job.message_ref
                    uow.commit()
    except Exception:
        log.warning("could not report progress of %s", show_job(job.id), exc_info=True)


def _principal(uow: UnitOfWork, user_id: int) -> Principal:
    user = uow.users.get(user_id)
    if user is None or not user.active:
        raise NotLinked("the user who asked for this job is no longer active")
    return Principal.of(user)


def run(deps: Deps, job_id: str) -> str:
    """Execute one job; safe to call twice for the same id (the second call does nothing).

    Returns:
        The final state's name, or "skipped" for a duplicate delivery.
    """
    with deps.uow_factory(Scope.everything()) as uow:
        if uow.jobs.get(job_id) is None:
            log.warning("job %s does not exist", job_id)
            return "skipped"
        if not uow.jobs.claim(job_id, now=deps.clock.now()):
            return "skipped"
        uow.commit()
        job = uow.jobs.get(job_id)
        assert job is not None
    progress = _Progress(deps, job)
    progress.show(force=True)
    deadline = deps.clock.monotonic() + deps.job_timeout
    try:
        _execute(deps, job, progress, deadline)
        _finish(deps, job, JobState.SUCCEEDED, job.result or "done")
    except _Cancelled:
        _finish(deps, job, JobState.CANCELLED, "cancelled while running")
    except BotError as e:
        _finish(deps, job, JobState.FAILED, e.user_message)
    except Exception:
        ref = new_id(6)
        log.exception("job %s failed, ref %s", show_job(job.id), ref)
        _finish(deps, job, JobState.FAILED, f"internal error, ref {ref}")
    progress.show(force=True)
    return job.state.value


def _execute(deps: Deps, job: Job, progress: _Progress, deadline: float) -> None:
    op = catalog.get(job.action)
    with deps.uow_factory(Scope.everything()) as uow:
        principal = _principal(uow, job.actor_user_id)
    # the world may have changed since the request: who asks, what they may do, what the target is now
    rbac.require(principal, op.perm, job.company_id, what=op.target.kind.value)
    # the gateway's inventory cache is seconds old at most: fresh enough to re-check ownership, and it
    # spares Proxmox a full resource listing per job; identity is confirmed before each call below
    target = op.target.recheck(deps, principal, job.target, company_id=job.company_id, fresh=False)
    hv = None if target.cluster is None else deps.hypervisors.for_cluster(target.cluster)
    # the records of the guests this job touches: the target's as requested, a new clone's from first sight
    known: dict[int, dict[str, Any]] = {target.guest.vmid: job.target} if target.guest is not None else {}
    for step in op.steps(hv, target, job.params):
        if step.on is not None:
            assert hv is not None
            # right before each call: is this still the guest the request was for? (its VMID may have been reused)
            _confirm(deps, hv, job, step.on, known)
        if step.check is not None:
            step.check()
        job.progress = step.label
        status = _follow(deps, hv, job, step.label, step.call(), progress, deadline)
        if not status.ok:
            detail = status.exitstatus or "failed"
            raise ExternalSystemError(f"Proxmox task {step.label} failed: {detail}"[:300])
    if op.result is not None:
        job.result = op.result(target, job.params)


def _confirm(deps: Deps, hv: Hypervisor, job: Job, on: GuestRef, known: dict[int, dict[str, Any]]) -> None:
    """Refuse, and say why in the audit trail, when a step would act on a guest other than the one meant."""
    current = hv.identity(on)
    target = known.get(on.vmid)
    if target is None:  # a guest this job created a step ago
        known[on.vmid] = {**job.target, "vmid": on.vmid, "name": current.name, "identity": current.to_dict()}
        return
    why = targets.replaced(target, current)
    if why is None:
        return
    with deps.uow_factory(Scope.everything()) as uow:
        audit.record(uow, clock=deps.clock, actor="system", action="job.refused", company_id=job.company_id,
                     target=job.summary, outcome="refused",
                     detail={"job": show_job(job.id), "why": why, "expected": target.get("identity"),
                             "found": current.to_dict()})
        uow.commit()
    raise Conflict(f"{why}. Nothing was done.")


def _follow(
    deps: Deps, hv: Hypervisor | None, job: Job, label: str, task: TaskRef, progress: _Progress, deadline: float
) -> TaskStatus:
    if task.upid is None or hv is None:  # synchronous in Proxmox: done already
        return TaskStatus(running=False, exitstatus="OK")
    job.upid = task.upid
    polls = 0
    while True:
        status = hv.task_status(task)
        job.progress = _progress_line(label, status)
        cancel = _heartbeat(deps, job)
        progress.show()
        if not status.running:
            return status
        if cancel:
            hv.cancel_task(task)
            raise _Cancelled()
        if deps.clock.monotonic() > deadline:
            raise ExternalSystemError(f"timed out after {deps.job_timeout} s; the Proxmox task may still run")
        # short tasks end in a fraction of a second: look again soon, then settle at poll_interval
        deps.clock.sleep(min(deps.poll_interval, 0.05 * 2**polls))
        polls += 1


def _progress_line(label: str, status: TaskStatus) -> str:
    parts = [label]
    if status.percent is not None:
        parts.append(f"{status.percent:.0f}%")
    if status.log_tail:
        parts.append(f"— {status.log_tail[-1][:150]}")
    return " ".join(parts)


def _heartbeat(deps: Deps, job: Job) -> bool:
    """Save progress and liveness; answer whether someone asked to cancel."""
    with deps.uow_factory(Scope.everything()) as uow:
        stored = uow.jobs.get(job.id)
        if stored is None:
            return True
        stored.heartbeat_at = deps.clock.now()
        stored.progress = job.progress[:2000]
        stored.upid = job.upid
        uow.commit()
        return stored.cancel_requested


def _finish(
    deps: Deps, job: Job, state: JobState, result: str, *, expected: tuple[JobState, ...] = (JobState.RUNNING,)
) -> bool:
    """Settle the job unless it already left ``expected`` (a reaper, a canceller and a worker may race).

    Returns:
        Whether this call settled it; only then are the approval and the audit trail updated.
    """
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        settled = uow.jobs.settle(job.id, expected=expected, to=state, at=now, result=result[:2000])
        stored = uow.jobs.get(job.id)
        if stored is None:
            return False
        if settled:
            stored.progress, stored.upid = job.progress[:2000], job.upid
            if job.approval_id:
                request = uow.approvals.get(job.approval_id)
                if request is not None:
                    request.state = ApprovalState.EXECUTED if state is JobState.SUCCEEDED else ApprovalState.FAILED
                    audit.record(uow, clock=deps.clock, actor="system", action=f"approval.{request.state.value}",
                                 company_id=job.company_id, target=f"{show_approval(request.id)} {request.action}",
                                 detail={"job": show_job(job.id)})
            audit.record(uow, clock=deps.clock, actor="system", action=f"{job.action}", company_id=job.company_id,
                         target=job.summary, outcome=state.value, detail={"job": show_job(job.id), "result": result})
        uow.commit()
        # whoever settled it, the caller now holds the final word
        job.state, job.result, job.finished_at = stored.state, stored.result, stored.finished_at
    if settled:
        # only the call that settled it: what the operation gives back is given back once
        operations.end(catalog.get(job.action), deps, operations.Ended(
            action=job.action, company_id=job.company_id, target=job.target, params=job.params,
            succeeded=state is JobState.SUCCEEDED))
    return settled


def reap(deps: Deps, *, stale_after: timedelta, queued_before: datetime | None = None) -> int:
    """Fail jobs whose worker died (no heartbeat for ``stale_after``) or that never started.

    Returns:
        How many jobs were marked failed (and reported).
    """
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        dead = uow.jobs.stale(heartbeat_before=now - stale_after)
        lost = []
        if queued_before is not None:
            lost = [j for j in uow.jobs.list(states=[JobState.QUEUED], limit=1000) if j.created_at < queued_before]
    count = 0
    for job, why, state in [(j, "the worker stopped while running it", JobState.RUNNING) for j in dead] + [
        (j, "it was never started (pvebot restarted)", JobState.QUEUED) for j in lost
    ]:
        if _finish(deps, job, JobState.FAILED, why, expected=(state,)):
            _notify(deps, job)
            count += 1
    return count


# ---- rendering -------------------------------------------------------------------------

_STATE_MARK = {
    JobState.QUEUED: "⏳ queued",
    JobState.RUNNING: "🔄 running",
    JobState.SUCCEEDED: "✅ done",
    JobState.FAILED: "❌ failed",
    JobState.CANCELLED: "⛔ cancelled",
}


def elapsed(job: Job, *, now: datetime) -> str:
    start = job.started_at or job.created_at
    end = job.finished_at or now
    seconds = max(0, int((end - start).total_seconds()))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min {seconds % 60} s"


def render(job: Job, *, now: datetime) -> Reply:
    """The job's live message: state, what, progress, outcome."""
    mark = _STATE_MARK[job.state]
    if job.state is JobState.SUCCEEDED:
        line = f"{mark} in {elapsed(job, now=now)}"
        if job.result and job.result != "done":
            line += f": {job.result}"
        severity = Severity.SUCCESS
    elif job.state in (JobState.FAILED, JobState.CANCELLED):
        line = f"{mark}: {job.result}"
        severity = Severity.ERROR if job.state is JobState.FAILED else Severity.WARNING
    elif job.state is JobState.RUNNING:
        line = f"{mark} {job.progress}".rstrip() + f" ({elapsed(job, now=now)})"
        severity = Severity.INFO
    else:
        line, severity = mark, Severity.INFO
    return Reply(title=f"{show_job(job.id)}: {job.summary}", text=line, severity=severity, job_id=job.id)
