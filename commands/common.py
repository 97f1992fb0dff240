"""Formatting shared by the command groups: sizes, durations, and the replies of queued work."""

from __future__ import annotations

from dataclasses import replace

from commands.registry import CommandContext
from core.chat import AnnounceApproval, Answer, FollowUp, Reply, Severity, StartJob, TrackApproval
from core.ids import show_approval, show_job
from core.model import ApprovalState, JobRoute
from core.services import approval_cards
from core.services.vms import Outcome


def human_bytes(n: int | float) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def human_duration(seconds: int) -> str:
    seconds = max(0, seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def outcome_reply(ctx: CommandContext, outcome: Outcome, what: str) -> Answer:
    """The answer to an operation: "queued job-…" and the job to start, or the approval card to track.

    A request made now is announced to its approvers once its card is posted; one known already was
    announced by the delivery that made it.
    """
    if outcome.approval is not None:
        approval_id = outcome.approval.id
        card = approval_cards.card(ctx.deps, outcome.approval, announcing=outcome.created)
        followups: tuple[FollowUp, ...] = (TrackApproval(approval_id),)
        if outcome.created:
            followups += (AnnounceApproval(approval_id),)
        elif outcome.approval.state is ApprovalState.PENDING:
            note = f"{what} is already waiting for approval: {show_approval(approval_id)}"
            card = replace(card, text=f"{note}. {card.text}")
        # else a re-delivery of a request closed since (withdrawn, decided): its card says how it ended
        return Answer(card, followups=followups)
    assert outcome.job is not None
    job = outcome.job
    if not outcome.created:
        # a re-delivery: the first delivery started it (or failed it); starting again would do nothing
        return Answer(Reply(text=f"already received: {show_job(job.id)} ({job.state.value})", severity=Severity.INFO))
    start = StartJob(job.id, recorded=JobRoute(job.conversation, job.message_ref))
    return Answer(Reply(text=f"⏳ queued {show_job(job.id)}: {job.summary}"), followups=(start,))
