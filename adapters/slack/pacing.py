"""One outbox per process for the bot's Slack messages: paced per channel, 429-aware, bounded in time.

Slack allows about one ``chat.postMessage`` / ``chat.update`` per second per channel (short
bursts aside) and answers ``429`` with ``Retry-After`` beyond that. Every thread of the
process (the bolt app's answers, the job workers' progress and verdicts) hands its posts and
edits to one :class:`SlackOutbox`, which

- sends at most one post or edit per ``interval`` per channel, counted from the end of the
  previous call in that channel, so Slack sees the gap too, whatever the network adds;
- on a 429 pauses that channel for its ``Retry-After`` and tries the same call again;
- coalesces edits of one message that are still waiting: only the newest content is sent,
  in the place of the oldest (the replaced edit ends "superseded");
- gives every item a verdict: delivered, refused by Slack (the ``SlackApiError``, e.g.
  ``not_in_channel``, at once), or :class:`DeliveryFailed` when it could not get through
  within ``deadline`` seconds of being handed over (queued behind others, paused by 429s,
  connection errors). A call in flight at the deadline may take one more HTTP timeout, so
  the bound is ``deadline + http_timeout`` (defaults: 120 s + 10 s). Failures are logged
  with the method, channel and reason only: never the token or the message text.

Ephemeral messages have their own per-channel lane without pacing (Slack limits them apart)
but get the same 429 handling and bound. Processes pace independently: RQ workers on other
machines each keep their own outbox.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from core.errors import ExternalSystemError

log = logging.getLogger(__name__)

PACED = frozenset({"chat.postMessage", "chat.update"})
DEFAULT_DEADLINE = 120.0
DEFAULT_HTTP_TIMEOUT = 10.0
# after a connection error or a 5xx: Slack is having a moment, not refusing this message
_BACKOFF = (0.5, 1.0, 2.0, 5.0)


class DeliveryFailed(ExternalSystemError):
    """A post or edit that could not get through to Slack in time (rate limited, unreachable)."""

    def __init__(self, reason: str) -> None:
        super().__init__("Slack did not take the message in time")
        self.reason = reason


@dataclass(frozen=True)
class Pace:
    """How an outbox paces and bounds its calls (tests shrink it; production keeps Slack's numbers).

    Attributes:
        interval: seconds between two posts or edits in one channel (Slack: about one a second).
        deadline: seconds a call may take from hand-over to its last attempt.
        fallback_deadline: the same for an answer that can still go by its ``response_url``:
            the user waits for it, and the response_url does not share the bot token's limits.
    """

    interval: float = 1.0
    deadline: float = DEFAULT_DEADLINE
    fallback_deadline: float = 30.0


@dataclass
class _Item:
    method: str
    channel: str
    args: dict[str, Any]
    deadline: float
    future: Future[Any]
    # (channel, ts) of the message an edit changes: what coalesces
    edits: tuple[str, str] | None
    seq: int
    attempts: int = 0
    reason: str = "still waiting for its turn in the channel at the deadline"


@dataclass
class _Lane:
    interval: float
    queue: deque[_Item] = field(default_factory=deque)
    not_before: float = 0.0
    busy: bool = False


def retry_after(e: SlackApiError, *, default: float = 1.0) -> float:
    """Seconds Slack asked us to wait (``Retry-After``; a fraction is honoured too)."""
    headers = getattr(e.response, "headers", None) or {}
    for key, value in dict(headers).items():
        if key.lower() == "retry-after":
            value = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                break
    return default


class SlackOutbox:
    """The process's one way to post and edit Slack messages with the bot token (thread-safe)."""

    def __init__(
        self,
        client: WebClient,
        *,
        pace: Pace | None = None,
        senders: int = 4,
        clock: Callable[[], float] = time.monotonic,
        on_rate_limited: Callable[[], None] | None = None,
    ) -> None:
        """Args:
        client: a WebClient without retry handlers of its own (this class retries, bounded by time).
        pace: interval and deadlines (Slack's defaults when None).
        senders: calls in flight at once, in different channels.
        clock: monotonic seconds.
        on_rate_limited: called at each 429 Slack answers (the metrics count them); must not raise.
        """
        self.client = client
        self._on_rate_limited = on_rate_limited
        self.pace = pace or Pace()
        self.interval, self.deadline, self.senders = self.pace.interval, self.pace.deadline, senders
        self._clock = clock
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def __repr__(self) -> str:  # the client holds the token: never show it
        return f"SlackOutbox(interval={self.interval}, deadline={self.deadline})"

    @property
    def bound(self) -> float:
        """Seconds within which every item handed over ends (delivered, refused or failed)."""
        return self.deadline + float(self.client.timeout)

    # ---- handing over ----

    def submit(self, method: str, args: dict[str, Any], *, deadline: float | None = None) -> Future[Any]:
        """Queue one Web API call (``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``).

        ``deadline`` (seconds from now) overrides the pace's, e.g. ``pace.fallback_deadline``.

        Returns:
            A future: the SlackResponse, None for an edit superseded by a newer one, or the
            exception (``SlackApiError`` refused, :class:`DeliveryFailed` not in time).
        """
        channel = str(args["channel"])
        future: Future[Any] = Future()
        now = self._clock()
        edits = (channel, str(args["ts"])) if method == "chat.update" else None
        sent = {k: v for k, v in args.items() if v is not None}
        item = _Item(method=method, channel=channel, args=sent, edits=edits, future=future,
                     deadline=now + (self.deadline if deadline is None else deadline), seq=next(self._seq))
        with self._cond:
            if self._closed:
                future.set_exception(DeliveryFailed("shutting down"))
                return future
            lane = self._lane(method, channel)
            if edits is not None and self._coalesce(lane, item):
                return future
            lane.queue.append(item)
            self._start_senders()
            self._cond.notify()
        return future

    def call(self, method: str, args: dict[str, Any]) -> Any:
        """:meth:`submit` and wait for the verdict (never longer than :attr:`bound`, plus a margin)."""
        return self.submit(method, args).result(timeout=self.bound + 5)

    def _lane(self, method: str, channel: str) -> _Lane:
        bucket = "chat" if method in PACED else method
        lane = self._lanes.get((bucket, channel))
        if lane is None:
            lane = self._lanes[(bucket, channel)] = _Lane(interval=self.interval if method in PACED else 0.0)
        return lane

    def _coalesce(self, lane: _Lane, item: _Item) -> bool:
        """A newer edit of a message still waiting takes the older one's place; the older one is dropped."""
        for i, waiting in enumerate(lane.queue):
            if waiting.edits == item.edits:
                lane.queue[i] = _Item(method=item.method, channel=item.channel, args=item.args, edits=item.edits,
                                      future=item.future, deadline=item.deadline, seq=waiting.seq,
                                      attempts=waiting.attempts)
                waiting.future.set_result(None)
                return True
        return False

    # ---- sending ----

    def _start_senders(self) -> None:
        while len(self._threads) < self.senders:
            thread = threading.Thread(target=self._send_loop, name=f"slack-outbox-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _next(self) -> tuple[_Lane, _Item] | None:
        """Under the lock: the oldest item whose channel may be written now; None when closed and empty."""
        while True:
            now = self._clock()
            wake = now + 1.0
            best: tuple[_Lane, _Item] | None = None
            for lane in self._lanes.values():
                self._expire(lane, now)
                if lane.busy or not lane.queue:
                    continue
                if lane.not_before > now:
                    wake = min(wake, lane.not_before)
                    continue
                if best is None or lane.queue[0].seq < best[1].seq:
                    best = (lane, lane.queue[0])
            if best is not None:
                lane, item = best
                lane.queue.popleft()
                lane.busy = True
                return lane, item
            if self._closed and not any(lane.queue or lane.busy for lane in self._lanes.values()):
                return None
            for lane in self._lanes.values():
                if lane.queue:
                    wake = min(wake, lane.queue[0].deadline)
            self._forget_idle(now)
            self._cond.wait(timeout=max(0.001, wake - now))

    def _expire(self, lane: _Lane, now: float) -> None:
        late = [item for item in lane.queue if item.deadline <= now]
        for item in late:
            lane.queue.remove(item)
            self._fail(item, DeliveryFailed(item.reason))

    def _forget_idle(self, now: float) -> None:
        if len(self._lanes) > 1000:  # a long-running process writes in many channels over time
            self._lanes = {k: v for k, v in self._lanes.items()
                           if v.queue or v.busy or v.not_before > now - 60}

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                picked = self._next()
            if picked is None:
                return
            lane, item = picked
            item.attempts += 1
            outcome: BaseException | Any
            try:
                outcome = self.client.api_call(item.method, json=item.args)
            except BaseException as e:  # a verdict for every item, whatever went wrong
                outcome = e
            with self._cond:
                lane.busy = False
                self._settle(lane, item, outcome)
                self._cond.notify_all()

    def _settle(self, lane: _Lane, item: _Item, outcome: Any) -> None:
        """Under the lock: deliver the verdict, or put the item back at the head of its lane to try again."""
        now = self._clock()
        lane.not_before = max(lane.not_before, now + lane.interval)
        if not isinstance(outcome, BaseException):
            item.future.set_result(outcome)
            return
        wait = self._retry_in(outcome, item)
        if wait is None:
            self._fail(item, outcome)
            return
        if now + wait >= item.deadline:
            self._fail(item, DeliveryFailed(item.reason))
            return
        lane.not_before = max(lane.not_before, now + wait)
        lane.queue.appendleft(item)

    def _retry_in(self, e: BaseException, item: _Item) -> float | None:
        """Seconds until the next try for a failure worth retrying; None for a refusal."""
        if isinstance(e, SlackApiError):
            status = getattr(e.response, "status_code", 200)
            if status == 429:
                if self._on_rate_limited is not None:
                    self._on_rate_limited()
                item.reason = "rate limited (429) until the deadline"
                return retry_after(e, default=self.interval)
            if status < 500:
                return None  # not_in_channel, invalid_blocks, …: Slack will say the same again
            item.reason = f"Slack answered {status}"
        elif isinstance(e, Exception):
            item.reason = f"cannot reach Slack ({type(e).__name__})"
        else:
            return None  # KeyboardInterrupt and friends: give up on it
        return _BACKOFF[min(item.attempts, len(_BACKOFF)) - 1]

    def _fail(self, item: _Item, error: BaseException) -> None:
        if isinstance(error, DeliveryFailed):
            log.warning("Slack %s in %s not delivered in time: %s", item.method, item.channel, error.reason)
        item.future.set_exception(error)

    # ---- shutting down ----

    def close(self, *, timeout: float = 5.0) -> None:
        """Stop taking items; send what is queued for up to ``timeout`` seconds, then fail the rest."""
        with self._cond:
            self._closed = True
            cutoff = self._clock() + timeout
            for lane in self._lanes.values():
                for item in lane.queue:
                    item.deadline = min(item.deadline, cutoff)
                    item.reason = "the bot was shutting down"
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=timeout + float(self.client.timeout))
