"""The one delivery path: post an :class:`Answer`'s reply, then run the follow-ups it announced.

Every adapter (Slack, Teams, the shell, tests) hands its own ``post`` callback here instead of
starting jobs itself, so there is one failure behaviour for all of them:

- the post fails: every job the reply announced is failed ("nothing was done"), every approval
  request it was to announce is withdrawn before any approver is asked, and the error goes back
  to the adapter; nothing runs, and nobody decides, behind a message nobody saw;
- the queue refuses a job: ``jobs.start`` fails it and reports that in the conversation
  ("could not queue job-…: the job queue is unavailable; nothing was done");
- an approvers' copy cannot be posted: that is logged, and the requester's card says who must
  decide and what to type (``approval_cards.announce``);
- anything else going wrong after the post leaves the job to the reaper's start timeout, and a
  request nobody was told of to the approvers' ``approval list`` and its expiry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from core.chat import AnnounceApproval, Answer, MessageRef, Reply, StartJob, TrackApproval
from core.errors import BotError
from core.ids import show_approval, show_job
from core.services import approval_cards, approvals, jobs
from core.services.deps import Deps

log = logging.getLogger(__name__)

Post = Callable[[Reply], MessageRef | None]
AsyncPost = Callable[[Reply], Awaitable[MessageRef | None]]


def not_posted(job_id: str) -> str:
    return f"{show_job(job_id)} was not started: its reply could not be posted; nothing was done"


# the note of a withdrawn request, which an `approve` of it answers with
WITHDRAWN = "withdrawn: its card could not be posted to the requester, so no approver was asked; ask again"


def deliver(deps: Deps, answer: Answer, *, post: Post) -> MessageRef | None:
    """Post ``answer.reply`` with ``post``, then start and track what it announced.

    Returns:
        Where the reply landed (None when the adapter has no message to point at).

    Raises:
        Whatever ``post`` raised, after the announced jobs were failed.
    """
    try:
        posted = post(answer.reply)
    except BaseException:
        abandon(deps, answer)
        raise
    follow_up(deps, answer, posted=posted)
    return posted


async def deliver_async(deps: Deps, answer: Answer, *, post: AsyncPost) -> MessageRef | None:
    """:func:`deliver` for adapters on an event loop: ``post`` is awaited, the follow-ups run in a thread."""
    try:
        posted = await post(answer.reply)
    except BaseException:  # a cancelled post too: nobody will see the announcement
        if answer.followups:
            await asyncio.to_thread(abandon, deps, answer)
        raise
    if answer.followups:  # most answers announce nothing: spare them the thread hop
        await asyncio.to_thread(partial(follow_up, deps, answer, posted=posted))
    return posted


def abandon(deps: Deps, answer: Answer) -> None:
    """The reply never reached the user: fail the jobs it announced and withdraw the requests it was to
    announce, so that nothing waits, runs or is decided unseen."""
    for item in answer.followups:
        try:
            if isinstance(item, StartJob):
                jobs.abandon(deps, item.job_id, why=not_posted(item.job_id))
            elif isinstance(item, AnnounceApproval):
                approvals.withdraw(deps, item.approval_id, why=WITHDRAWN)
        except Exception:
            what = show_job(item.job_id) if isinstance(item, StartJob) else show_approval(item.approval_id)
            log.exception("could not close %s after its reply was lost", what)


def follow_up(deps: Deps, answer: Answer, *, posted: MessageRef | None) -> None:
    """The reply is out: track approval cards where they landed, ask their approvers, queue the jobs.

    An answer lists a request's TrackApproval before its AnnounceApproval, so that a copy that cannot be
    posted finds the requester's card to edit.
    """
    for item in answer.followups:
        try:
            if isinstance(item, TrackApproval):
                if posted is not None:
                    approval_cards.card_posted(deps, item.approval_id, posted)
            elif isinstance(item, AnnounceApproval):
                approval_cards.announce(deps, item.approval_id)
            elif isinstance(item, StartJob):
                # the reply that said "queued" is the job's message from now on
                jobs.start(deps, item.job_id, posted=posted, becomes=True, recorded=item.recorded)
        except BotError as e:
            # jobs.start failed the job and told the conversation why already
            log.warning("follow-up %s did not happen: %s", item, e.user_message)
        except Exception:
            # the database went away mid-way: the reaper's start timeout settles the job later
            log.exception("follow-up %s failed", item)
