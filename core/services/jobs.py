"""Jobs: Proxmox operations requested from chat, run once by a worker, reported as they move.

``submit`` records a job (idempotent per request id) and ``start`` queues it once the reply
that announced it is posted, so progress threads under that reply; a job that cannot be queued,
or that no worker takes, is failed (``abandon``, ``reap``), never left waiting. ``run`` is the body a
worker executes: it re-checks who asked and what they may touch, follows every Proxmox task,
and edits one progress message (at most one edit per ``Deps.progress_interval``).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from core import logcontext, rbac
from core.chat import Action, ConversationRef, MessageRef, Reply, Severity
from core.errors import BotError, Conflict, DuplicateRequest, ExternalSystemError, NotFound, NotLinked
from core.ids import new_id, show_approval, show_job
from core.model import ApprovalState, GuestRef, Job, JobRoute, JobState, TaskRef, TaskStatus
from core.ports import Hypervisor, UnitOfWork
from core.principal import Principal, Scope
from core.services import approval_cards, audit, catalog, notifications, operations, targets
from core.services.deps import Deps
from core.services.operations import Target

log = logging.getLogger(__name__)
_T = TypeVar("_T")
RUN_JOB = "jobs.run.run_job"  # the RQ entry point, by dotted path


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
    admit: Callable[[UnitOfWork], None] | None = None,
) -> tuple[Job, bool]:
    """Record a job for ``action`` on ``target``; the same ``request_id`` gives back the same job.

    The target's record (for a guest, which guest it is) is what the job acts on: it refuses
    anything that took its place since. ``company_id`` defaults to the target's company (a
    template's company is the caller's). ``admit`` runs in the same transaction as the job's record,
    before it: what it checks (a quota) and the job it lets in are one decision.

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
        # a re-delivery is rare: the request id's unique key tells it below, without a look-up
        # first, unless ``admit`` would refuse the re-delivery of a request it let in before
        if admit is not None:
            existing = uow.jobs.by_request(request_id)
            if existing is not None:
                return existing, False
            admit(uow)
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
            # a delivery of the same request (a platform retrying a slow answer) stored it first and
            # the unique request id refused ours: a re-delivery, which changes nothing (the quota
            # that ``admit`` took and the audit row go back with this transaction)
            uow.rollback()
            existing = uow.jobs.by_request(request_id)
            if existing is None:
                raise
            return existing, False
        return job, True


def start(deps: Deps, job_id: str, *, posted: MessageRef | None, becomes: bool = False,
          recorded: JobRoute | None = None) -> None:
    """Queue a recorded job; its message is ``posted`` itself, or threads under it.

    Args:
        deps: the process's dependencies; ``deps.queue`` receives the job.
        job_id: a job recorded by :func:`submit`; one no longer queued is left alone.
        posted: where the announcing reply landed, or None when it has no message to thread under.
        becomes: ``posted`` is the job's own "queued" reply, which the job then edits through running
            to its outcome (one message a job); otherwise (an approval card) its message threads under it.
        recorded: the job's conversation and message as :func:`submit` recorded them a moment ago, so
            that they need not be read back; None reads them (and leaves a job no longer queued alone).

    Raises:
        ExternalSystemError: the queue refused the job; it is failed and reported already, nothing ran.
    """
    # no transaction: the hand-over's own condition (still queued) is what guards it, and the
    # read before it locks nothing, so each statement commits alone (a round trip fewer on a server)
    with deps.uow_factory(Scope.everything(), autocommit=True) as uow:
        route = recorded if recorded is not None else uow.jobs.route_if_queued(job_id)
        if route is None:
            return
        conversation, message_ref = ConversationRef.from_dict(route.conversation), route.message_ref
        if posted is not None and becomes and not message_ref:
            message_ref = posted.to_dict()
        elif posted is not None and conversation.thread is None:
            conversation = conversation.with_thread(posted.message_id)
        # recorded before the hand-over: if this process dies holding it, the next one can tell
        if not uow.jobs.hand_over(job_id, route=JobRoute(conversation.to_dict(), message_ref),
                                  queue_owner=deps.queue.owner):
            return  # cancelled, or failed by the reaper, since it was recorded or read
        uow.commit()
    try:
        # RQ gets a little longer than our own deadline, so that we report the timeout, not RQ
        deps.queue.enqueue(RUN_JOB, job_id=job_id, kwargs={"job_id": job_id}, timeout=deps.job_timeout + 60)
    except Exception as e:
        log.warning("could not queue %s", show_job(job_id), exc_info=True)
        why = f"could not queue {show_job(job_id)}: the job queue is unavailable; nothing was done"
        abandon(deps, job_id, why=why)
        raise ExternalSystemError(why) from e


def abandon(deps: Deps, job_id: str, *, why: str) -> bool:
    """Fail a job no worker was given (its announcement was never posted, the queue refused it).

    Args:
        deps: the process's dependencies.
        job_id: the job to fail; only a job still queued is failed.
        why: the result shown to the user, e.g. "…; nothing was done".

    Returns:
        Whether this call failed it (False: it was gone, or a worker or canceller got there first).
    """
    with deps.uow_factory(Scope.everything()) as uow:
        job = uow.jobs.get(job_id)
    if job is None or not _finish(deps, job, JobState.FAILED, why, expected=(JobState.QUEUED,)):
        return False
    _notify(deps, job)
    return True


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


STOPPED_MIDWAY = ("pvebot was stopped while this job ran; the Proxmox task may have finished or may still run: "
                  "check the guest, then ask again if needed")


class _Cancelled(Exception):
    pass


class _SettledUnder(Exception):
    """Another process settled the job while it ran (a reaper, a process stopping): it takes no further step."""


class _OutcomeUnknown(Exception):
    """The task was started and then could not be followed to its end."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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


def _requester(deps: Deps, job: Job) -> Principal:
    with deps.uow_factory(Scope.everything()) as uow:
        return _principal(uow, job.actor_user_id)


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
        requester = uow.users.get(job.actor_user_id)
    # a worker runs it away from the request that asked: its lines say whose it is, as the request's do
    with logcontext.bound(request_id=job.request_id, job_id=show_job(job.id), company=job.company_id,
                          user=requester.email if requester is not None else None):
        return _run_claimed(deps, job)


def _run_claimed(deps: Deps, job: Job) -> str:
    progress = _Progress(deps, job)
    progress.show(force=True)
    deadline = deps.clock.monotonic() + deps.job_timeout
    try:
        _execute(deps, job, progress, deadline)
        _finish(deps, job, JobState.SUCCEEDED, job.result or "done")
    except _Cancelled:
        _finish(deps, job, JobState.CANCELLED, "cancelled while running")
    except _SettledUnder:
        pass  # the verdict stored under it is the job's, and its message shows it below
    except _OutcomeUnknown as e:
        _finish(deps, job, JobState.UNKNOWN, e.message)
    except BotError as e:
        _finish(deps, job, JobState.FAILED, e.user_message)
    except Exception:
        ref = new_id(6)
        log.exception("job %s failed, ref %s", show_job(job.id), ref)
        _finish(deps, job, JobState.FAILED, f"internal error, ref {ref}")
    except BaseException:
        # The process is being stopped under the job: RQ's cold shutdown (a second SIGTERM) raises
        # SystemExit in here. Settle it and say so now, rather than leave it RUNNING for the reaper.
        _finish(deps, job, JobState.UNKNOWN, STOPPED_MIDWAY)
        progress.show(force=True)
        raise
    progress.show(force=True)
    if job.started_at is not None and job.finished_at is not None:
        seconds = (job.finished_at - job.started_at).total_seconds()
        deps.telemetry.job_finished(action=job.action, state=job.state.value, seconds=max(0.0, seconds))
    return job.state.value


def _execute(deps: Deps, job: Job, progress: _Progress, deadline: float) -> None:
    op = catalog.get(job.action)
    principal = _through_outage(deps, job, "read the requester of", lambda: _requester(deps, job))
    # the world may have changed since the request: who asks, what they may do, what the target is now
    rbac.require(principal, op.perm, job.company_id, what=op.target.kind.value)
    # the gateway's inventory cache is seconds old at most: fresh enough to re-check ownership, and it
    # spares Proxmox a full resource listing per job; identity is confirmed before each call below
    target = _through_outage(deps, job, "find the target of", lambda: op.target.recheck(
        deps, principal, job.target, company_id=job.company_id, fresh=False))
    hv = None if target.cluster is None else deps.hypervisors.for_cluster(target.cluster)
    if op.precheck is not None:
        op.precheck(deps, principal, target, job)
    # the records of the guests this job touches: the target's as requested, a new clone's from first sight
    known: dict[int, dict[str, Any]] = {target.guest.vmid: job.target} if target.guest is not None else {}
    done = 0
    warned: list[str] = []
    try:
        for step in op.steps(hv, target, job.params):
            if job.state.finished:
                # its last heartbeat found it settled already: the user has read that verdict, and
                # nothing more is started on Proxmox in its name
                raise _SettledUnder()
            status = _run_step(deps, hv, job, step, known, progress, deadline)
            if status is not None and status.warnings is not None:
                warned.append(f"{step.label}: {status.warnings}")
            done += 1
    except BotError as e:
        if done and op.compensate is not None:
            # what the first steps made must not outlive the failure unnoticed (a half-made clone)
            raise ExternalSystemError(f"{e.user_message}; {_compensate(deps, hv, job, op, target, known, progress)}"
                                      [:600]) from e
        raise
    if op.result is not None:
        job.result = op.result(target, job.params)
    if warned:
        # done, but Proxmox logged warnings (vzdump's "WARNINGS: n"): the user should read the task log
        job.result = f"{job.result or 'done'}, with warnings ({'; '.join(warned)})"


def _run_step(deps: Deps, hv: Hypervisor | None, job: Job, step: operations.Step, known: dict[int, dict[str, Any]],
              progress: _Progress, deadline: float) -> TaskStatus | None:
    """Run one step; the status of the Proxmox task it started (None for a streamed step)."""
    if step.on is not None:
        assert hv is not None
        # right before each call: is this still the guest the request was for? (its VMID may have been reused)
        _confirm(deps, hv, job, step.on, known)
    if step.check is not None:
        try:
            step.check()
        except Conflict as e:  # refused before the call: say that nothing happened
            raise Conflict(f"{e.user_message}. Nothing was done.") from e
    job.progress = step.label
    if step.stream is not None:
        _stream(deps, job, step, progress, deadline)
        return None
    assert step.call is not None, f"step {step.label} has neither a call nor a stream"
    status = _follow(deps, hv, job, step.label, step.call(), progress, deadline)
    if not status.ok:
        detail = status.exitstatus or "failed"
        raise ExternalSystemError(f"Proxmox task {step.label} failed: {detail}"[:300])
    return status


def _stream(deps: Deps, job: Job, step: operations.Step, progress: _Progress, deadline: float) -> None:
    """Run a step that reports its own output lines; the latest line is the job's progress.

    Edits are coalesced to one per ``progress_interval``; a ticker shows the last line of a quiet spell too,
    so what a long command printed last is in the thread while it works on.
    """
    assert step.stream is not None
    lock = threading.Lock()
    dirty = [False]
    last = [deps.clock.monotonic()]

    def flush() -> None:
        with lock:
            if not dirty[0]:
                return
            last[0] = deps.clock.monotonic()
            # a cancel cannot stop a command half-way through on the node: it is honoured between steps
            try:
                _beat(deps, job)
            except Exception:
                # a busy database: the line stays pending and the next tick saves it
                log.warning("could not save the progress of %s; trying again", show_job(job.id), exc_info=True)
                return
            dirty[0] = False
            progress.show(force=True)

    def line(text: str) -> None:
        text = text.strip()
        if not text:
            return
        with lock:
            job.progress = f"{step.label} — {text[:150]}"
            dirty[0] = True
        if deps.clock.monotonic() - last[0] >= deps.progress_interval:
            flush()
        if deps.clock.monotonic() > deadline:
            raise ExternalSystemError(f"timed out after {deps.job_timeout} s during {step.label}")

    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(deps.progress_interval):
            flush()

    ticker = threading.Thread(target=tick, name=f"pvebot-progress-{job.id}", daemon=True)
    ticker.start()
    try:
        step.stream(line)
    finally:
        stop.set()
        ticker.join(timeout=5)
    flush()
    if _heartbeat(deps, job):
        raise _Cancelled()


def _compensate(deps: Deps, hv: Hypervisor | None, job: Job, op: operations.Operation, target: Target,
                known: dict[int, dict[str, Any]], progress: _Progress) -> str:
    """Undo what the job's first steps made; says what was undone, or what is left behind."""
    assert op.compensate is not None
    deadline = deps.clock.monotonic() + deps.job_timeout
    undone: list[str] = []
    try:
        for step in op.compensate(hv, target, job.params):
            _run_step(deps, hv, job, step, known, progress, deadline)
            undone.append(step.label)
    except (BotError, _OutcomeUnknown) as e:
        why = e.user_message if isinstance(e, BotError) else e.message
        return f"and undoing it failed too ({why}): {op.leftover(target, job.params) if op.leftover else ''}".rstrip()
    return "undone: " + ", ".join(undone) if undone else "nothing to undo"


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
    silent_since: float | None = None
    while True:
        try:
            status = hv.task_status(task)
        except ExternalSystemError as e:
            # following is a read: the task goes on in Proxmox whatever our connection does, so a
            # 500 or a reset is no verdict; ask again, and past the grace say that nobody knows
            now = deps.clock.monotonic()
            silent_since = now if silent_since is None else silent_since
            if now - silent_since >= deps.follow_grace or now > deadline:
                raise _OutcomeUnknown(
                    f"Proxmox stopped answering while {label} ran ({e.user_message}); it may have succeeded: "
                    f"{_how_to_check(job)}") from e
            deps.clock.sleep(deps.poll_interval)
            continue
        silent_since = None
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


def _how_to_check(job: Job) -> str:
    if "vmid" in job.target:
        return f"check `vm status {job.target['cluster']}/{job.target['vmid']}`"
    return "check in Proxmox before trying again"


def _progress_line(label: str, status: TaskStatus) -> str:
    parts = [label]
    if status.percent is not None:
        parts.append(f"{status.percent:.0f}%")
    # Proxmox's own status words ("TASK OK", "no content") say nothing the state does not
    said = [line for line in status.log_tail if line.strip() and not _PROXMOX_NOISE.match(line.strip())]
    if said:
        parts.append(f"— {said[-1][:150]}")
    return " ".join(parts)


_PROXMOX_NOISE = re.compile(r"^(TASK (OK|ERROR.*|WARNINGS.*)|no content|OK)$", re.IGNORECASE)


def _heartbeat(deps: Deps, job: Job) -> bool:
    """Save progress and liveness; answer whether someone asked to cancel.

    A database that does not answer for a while must not end a job whose Proxmox task runs on: the
    beat is skipped (the reaper tolerates a missed beat or two) and the next poll tries again.
    """
    try:
        return _beat(deps, job)
    except Exception:
        log.warning("could not save the progress of %s; following its task anyway", show_job(job.id),
                    exc_info=True)
        return False


def _beat(deps: Deps, job: Job) -> bool:
    with deps.uow_factory(Scope.everything()) as uow:
        stored = uow.jobs.get(job.id)
        if stored is None:
            return True
        if stored.state.finished:
            # settled under it (a stopping process, a reaper): what it shows from now on is that verdict
            job.state, job.result, job.finished_at = stored.state, stored.result, stored.finished_at
            return False
        stored.heartbeat_at = deps.clock.now()
        stored.progress = job.progress[:2000]
        _keep_task(uow, stored, job.upid)
        uow.commit()
        return stored.cancel_requested


def _keep_task(uow: UnitOfWork, stored: Job, upid: str | None) -> None:
    """The job follows ``upid`` now; a task it had not followed before is kept beside the others it started."""
    if upid is not None and upid != stored.upid:
        # one transaction for both: a task is recorded exactly when the job first names it
        uow.jobs.add_task(stored, upid)
    stored.upid = upid


def _finish(
    deps: Deps, job: Job, state: JobState, result: str, *, expected: tuple[JobState, ...] = (JobState.RUNNING,)
) -> bool:
    """Settle the job unless it already left ``expected`` (a reaper, a canceller and a worker may race).

    The verdict is written even through a short database outage: it is retried for ``follow_grace``.

    Returns:
        Whether this call settled it; only then are the approval and the audit trail updated.
    """
    settled = _through_outage(deps, job, "save the verdict of",
                              lambda: _settle(deps, job, state, result, expected=expected))
    if settled and job.approval_id:
        _show_on_approval(deps, job.approval_id)
    return settled


def _show_on_approval(deps: Deps, approval_id: str) -> None:
    """The approval's cards said "approved · job-… queued": every copy now says how its job ended."""
    try:
        with deps.uow_factory(Scope.everything()) as uow:
            approval = uow.approvals.get(approval_id)
        if approval is not None:
            approval_cards.update_card(deps, approval)
    except Exception:
        # the verdict is saved and the job's own message tells it; the cards are a courtesy on top
        log.warning("could not show the end of its job on %s", show_approval(approval_id), exc_info=True)


def _through_outage(deps: Deps, job: Job, what: str, work: Callable[[], _T]) -> _T:
    """``work`` (database reads and writes), retried for ``follow_grace`` while the database does not answer.

    Only failures that are not the core's own verdicts are retried: a ``BotError`` is an answer.
    """
    give_up = deps.clock.monotonic() + deps.follow_grace
    while True:
        try:
            return work()
        except BotError:
            raise
        except Exception:
            if deps.clock.monotonic() >= give_up:
                raise
            log.warning("could not %s %s yet; trying again", what, show_job(job.id), exc_info=True)
            deps.clock.sleep(min(2.0, max(deps.poll_interval, 0.1)))


def _settle(deps: Deps, job: Job, state: JobState, result: str, *, expected: tuple[JobState, ...]) -> bool:
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        settled = uow.jobs.settle(job.id, expected=expected, to=state, at=now, result=result[:2000])
        stored = uow.jobs.get(job.id)
        if stored is None:
            return False
        if settled:
            stored.progress = job.progress[:2000]
            _keep_task(uow, stored, job.upid)
            if job.approval_id:
                request = uow.approvals.get(job.approval_id)
                if request is not None:
                    request.state = {JobState.SUCCEEDED: ApprovalState.EXECUTED,
                                     JobState.UNKNOWN: ApprovalState.UNKNOWN}.get(state, ApprovalState.FAILED)
                    audit.record(uow, clock=deps.clock, actor="system", action=f"approval.{request.state.value}",
                                 company_id=job.company_id, target=f"{show_approval(request.id)} {request.action}",
                                 detail={"job": show_job(job.id)})
            audit.record(uow, clock=deps.clock, actor="system", action=f"{job.action}", company_id=job.company_id,
                         target=job.summary, outcome=state.value, detail={"job": show_job(job.id), "result": result})
            # in the transaction that settles it: the outcome reaches its subscribers even when the
            # conversation that started the job is gone, and a job settled once is announced once
            notifications.record(uow, notifications.job_event(stored), clock=deps.clock)
        uow.commit()
        # whoever settled it, the caller now holds the final word
        job.state, job.result, job.finished_at = stored.state, stored.result, stored.finished_at
    if settled:
        # only the call that settled it: what the operation gives back is given back once
        operations.end(catalog.get(job.action), deps, operations.Ended(
            action=job.action, company_id=job.company_id, target=job.target, params=job.params,
            succeeded=state is JobState.SUCCEEDED))
    return settled


def reap(
    deps: Deps,
    *,
    stale_after: timedelta,
    start_timeout: timedelta | None = None,
    owner_gone: Callable[[str], bool] | None = None,
    requeue_after: timedelta | None = None,
) -> int:
    """Settle jobs whose worker died (outcome unknown), that no worker took in time, or whose in-process queue
    is gone (failed: nothing was done).

    A job handed to a shared queue that no longer has it (Redis restarted empty: the database is the
    source of truth) is handed over again once it waited ``requeue_after``; it runs once whatever
    happens, since a worker must claim it first.

    Args:
        deps: the process's dependencies.
        stale_after: a running job without a heartbeat this long lost its worker.
        start_timeout: a queued job older than this was never taken by any worker (None: no limit).
        owner_gone: answers whether the process behind a ``Job.queue_owner`` has ended, so that what
            its embedded queue held (and took with it) is failed now rather than at ``start_timeout``.

    Returns:
        How many jobs were settled (and reported).
    """
    now = deps.clock.now()
    with deps.uow_factory(Scope.everything()) as uow:
        dead = uow.jobs.stale(heartbeat_before=now - stale_after)
        waiting = uow.jobs.waiting()
    # what a dead worker had started in Proxmox went on without it: how it ended is not known, not "failed"
    verdicts = [(j, _reaped_midway(j), JobState.RUNNING) for j in dead]
    for job in waiting:
        if start_timeout is not None and job.created_at <= now - start_timeout:
            why = f"never started within {_span(start_timeout)}: no worker took it; nothing was done"
            verdicts.append((job, why, JobState.QUEUED))
        elif owner_gone is not None and job.queue_owner and owner_gone(job.queue_owner):
            verdicts.append((job, "never started: the pvebot process holding it stopped; nothing was done",
                             JobState.QUEUED))
        elif (requeue_after is not None and job.queue_owner == deps.queue.owner == "redis"
              and job.created_at <= now - requeue_after and not deps.queue.holds(job.id)):
            _requeue(deps, job)
    count = 0
    for job, why, state in verdicts:
        verdict = JobState.UNKNOWN if state is JobState.RUNNING else JobState.FAILED
        if _finish(deps, job, verdict, why, expected=(state,)):
            if state is JobState.QUEUED:
                _drop_from_queue(deps, job.id)
            _notify(deps, job)
            count += 1
    return count


def _reaped_midway(job: Job) -> str:
    return f"the worker stopped while running it; what it started in Proxmox may have finished: {_how_to_check(job)}"


NEVER_STARTED_STOPPED = "never started: pvebot was stopped before a worker took it; nothing was done"


def settle_held(deps: Deps, *, owner: str) -> int:
    """Settle what an in-process queue still holds as its process stops, and tell each job's user.

    Its queued jobs go with the process: failed, nothing was done. Its running ones are cut off
    mid-way: how they end is not known (:data:`STOPPED_MIDWAY`). Other processes' jobs are left alone.

    Args:
        deps: the stopping process's dependencies (its notifier still open).
        owner: the queue's ``owner`` (``embedded:<host>:<pid>:…``), as stored on the jobs it was handed.

    Returns:
        How many jobs were settled.
    """
    with deps.uow_factory(Scope.everything()) as uow:
        # every running job: "stale" before a moment no heartbeat reaches
        later = deps.clock.now() + timedelta(days=3650)
        running = [j for j in uow.jobs.stale(heartbeat_before=later) if j.queue_owner == owner]
        queued = [j for j in uow.jobs.waiting() if j.queue_owner == owner]
    count = 0
    for job, was, verdict, why in (*((j, JobState.RUNNING, JobState.UNKNOWN, STOPPED_MIDWAY) for j in running),
                                   *((j, JobState.QUEUED, JobState.FAILED, NEVER_STARTED_STOPPED) for j in queued)):
        if _finish(deps, job, verdict, why, expected=(was,)):
            _notify(deps, job)
            count += 1
    return count


def _requeue(deps: Deps, job: Job) -> None:
    log.warning("%s was lost by the job queue (restarted empty?); handing it over again", show_job(job.id))
    with deps.uow_factory(Scope.everything()) as uow:
        audit.record(uow, clock=deps.clock, actor="system", action="job.requeued", company_id=job.company_id,
                     target=job.summary, detail={"job": show_job(job.id), "why": "the job queue no longer had it"})
        uow.commit()
    try:
        deps.queue.enqueue(RUN_JOB, job_id=job.id, kwargs={"job_id": job.id}, timeout=deps.job_timeout + 60)
    except Exception:
        # still down: the next sweep tries again, and the start timeout has the last word
        log.warning("could not hand %s over again yet", show_job(job.id), exc_info=True)


def _drop_from_queue(deps: Deps, job_id: str) -> None:
    # a worker that takes it later would only skip it (the claim fails); this spares it the trip
    try:
        deps.queue.cancel(job_id)
    except Exception:
        log.info("could not drop %s from the queue", show_job(job_id), exc_info=True)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    return f"{seconds // 60} min" if seconds >= 120 and seconds % 60 == 0 else f"{seconds} s"


# ---- rendering -------------------------------------------------------------------------

_STATE_MARK = {
    JobState.QUEUED: "⏳ queued",
    JobState.RUNNING: "🔄 running",
    JobState.SUCCEEDED: "✅ done",
    JobState.FAILED: "❌ failed",
    JobState.CANCELLED: "⛔ cancelled",
    JobState.UNKNOWN: "❓ outcome unknown",
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
        # what is now true, when the operation says it ("web-01 is running"), then how long it took
        took = f"done in {elapsed(job, now=now)}"
        line = f"✅ {job.result} ({took})" if job.result and job.result != "done" else f"✅ {took}"
        severity = Severity.SUCCESS
    elif job.state in (JobState.FAILED, JobState.CANCELLED, JobState.UNKNOWN):
        line = f"{mark}: {job.result}"
        severity = Severity.ERROR if job.state is JobState.FAILED else Severity.WARNING
    elif job.state is JobState.RUNNING:
        line = f"{mark} {job.progress}".rstrip() + f" ({elapsed(job, now=now)})"
        severity = Severity.INFO
    else:
        line, severity = mark, Severity.INFO
    # while it can still be stopped; `job cancel` checks who presses it
    actions = () if job.state.finished else (Action("Cancel", f"job cancel {show_job(job.id)}"),)
    return Reply(title=f"{show_job(job.id)}: {job.summary}", text=line, severity=severity, progress_of=job.id,
                 actions=actions)
