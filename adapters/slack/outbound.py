"""How the bot answers in Slack, asynchronously: public replies, ephemeral errors, edits and files.

Public replies go through ``chat.postMessage`` so their ``ts`` is known (jobs thread under
it, approval cards get edited). Private replies and errors are ephemeral
(``chat.postEphemeral``). Both, and edits, go through the process's
:class:`adapters.slack.pacing.SlackOutbox`, which paces them per channel with the job
workers' messages and waits out 429s for a bounded time. Where the bot cannot post (a DM
between two other people, a channel it is not in) or could not get through in that time,
the answer falls back to the request's ``response_url``, which Slack lets us use at most 5
times in 30 minutes (:class:`ResponseUrlBudget`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack.pacing import DeliveryFailed, SlackOutbox
from adapters.slack.render import Rendered, render
from adapters.slack.translate import Incoming
from core.chat import ConversationRef, MessageRef, Reply, Severity

log = logging.getLogger(__name__)
# errors that mean "the bot cannot write here", not "Slack is broken"
_CANNOT_POST = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action", "cant_update_message",
                "message_not_found"}


def is_private(reply: Reply) -> bool:
    return reply.private or reply.severity is Severity.ERROR


# a response_url that answers 429, 5xx or not at all is tried again for this long (each try is one of its 5 uses)
RESPONSE_URL_BOUND = 30.0


class ResponseUrlBudget:
    """Slack's rule for a ``response_url``: at most ``limit`` posts within ``window`` seconds."""

    def __init__(self, *, limit: int = 5, window: float = 1800.0, max_urls: int = 10000) -> None:
        self.limit, self.window, self.max_urls = limit, window, max_urls
        self._used: dict[str, deque[float]] = {}

    def take(self, url: str) -> bool:
        """Claim one use of ``url``; False when its budget is spent."""
        now = time.monotonic()
        if len(self._used) > self.max_urls:  # response_urls expire after 30 minutes anyway
            self._used = {u: t for u, t in self._used.items() if t and t[-1] > now - self.window}
        used = self._used.setdefault(url, deque())
        while used and used[0] <= now - self.window:
            used.popleft()
        if len(used) >= self.limit:
            return False
        used.append(now)
        return True


class ResponseUrlFailed(DeliveryFailed):
    """The ``response_url`` fallback did not take the message either."""


class SlackPoster:
    """Sends rendered replies: posts, ephemerals and edits through the outbox, the rest with bolt's client."""

    def __init__(self, client: AsyncWebClient, outbox: SlackOutbox, *,
                 budget: ResponseUrlBudget | None = None) -> None:
        self.client = client
        self.outbox = outbox
        self.budget = budget or ResponseUrlBudget()

    async def _send(self, method: str, args: dict[str, Any], *, fallback: str | None = None) -> Any:
        # an answer with a response_url to fall back to stops waiting for the bot token sooner
        deadline = self.outbox.pace.fallback_deadline if fallback else None
        return await asyncio.wrap_future(self.outbox.submit(method, args, deadline=deadline))

    async def deliver(self, incoming: Incoming, reply: Reply) -> MessageRef | None:
        """Answer ``incoming``; returns the posted message (None when it is ephemeral or went by response_url)."""
        request = incoming.request
        if is_private(reply):
            await self.ephemeral(request.conversation, request.identity.user_id, reply,
                                 response_url=incoming.response_url)
            return None
        return await self.post(request.conversation, render(reply, caption=incoming.caption),
                               response_url=incoming.response_url, full_text=reply.plain_text())

    async def post(
        self, conversation: ConversationRef, rendered: Rendered, *, response_url: str | None = None,
        full_text: str | None = None,
    ) -> MessageRef | None:
        try:
            response = await self._send("chat.postMessage", {
                "channel": conversation.channel, "thread_ts": conversation.thread, "text": rendered.text,
                "blocks": rendered.blocks, "unfurl_links": False, "unfurl_media": False,
            }, fallback=response_url)
        except (SlackApiError, DeliveryFailed) as e:
            if (isinstance(e, SlackApiError) and _error(e) not in _CANNOT_POST) or not response_url:
                raise
            log.info("cannot post in %s (%s): answering through response_url", conversation.channel, _why(e))
            await self._respond(response_url, rendered, response_type="in_channel")
            return None
        posted = MessageRef(conversation=conversation, message_id=str(response["ts"]))
        if rendered.truncated and full_text:
            await self.attach(conversation.with_thread(conversation.thread or posted.message_id), full_text)
        return posted

    async def ephemeral(
        self, conversation: ConversationRef, user_id: str, reply: Reply, *, response_url: str | None = None
    ) -> None:
        rendered = render(reply)
        try:
            await self._send("chat.postEphemeral", {
                "channel": conversation.channel, "user": user_id, "thread_ts": conversation.thread,
                "text": rendered.text, "blocks": rendered.blocks,
            }, fallback=response_url)
        except (SlackApiError, DeliveryFailed) as e:
            if not response_url:
                raise
            log.info("ephemeral message refused (%s): answering through response_url", _why(e))
            await self._respond(response_url, rendered, response_type="ephemeral")

    async def update(self, message: MessageRef, blocks: list[dict[str, Any]], text: str) -> None:
        await self._send("chat.update", {"channel": message.conversation.channel, "ts": message.message_id,
                                         "text": text, "blocks": blocks})

    async def replace(self, response_url: str, rendered: Rendered) -> None:
        """Replace the message a button was clicked on, ephemeral ones included (best effort: logged if not)."""
        try:
            await self._respond(response_url, rendered, replace_original=True)
        except ResponseUrlFailed:
            pass  # said in the log already; the decision itself is posted apart

    async def attach(self, conversation: ConversationRef, text: str) -> None:
        """The full output as a text file in the reply's thread, when the message had to be cut."""
        try:
            await self.client.files_upload_v2(
                channel=conversation.channel, thread_ts=conversation.thread, content=text,
                filename="pvebot-output.txt", title="Full output",
            )
        except Exception:
            log.warning("could not attach the full output", exc_info=True)

    async def _respond(self, response_url: str, rendered: Rendered, **kwargs: Any) -> None:
        """Post through ``response_url`` within its budget, trying again for a while on 429, 5xx or no answer.

        Raises:
            ResponseUrlFailed: its budget is spent, or it did not take the message within RESPONSE_URL_BOUND.
        """
        webhook = AsyncWebhookClient(response_url, session=self.client.session, timeout=10)
        deadline = time.monotonic() + RESPONSE_URL_BOUND
        while True:
            if not self.budget.take(response_url):
                log.warning("response_url used 5 times in 30 minutes already: message dropped")
                raise ResponseUrlFailed("response_url budget spent")
            wait = 1.0
            try:
                response = await webhook.send(text=rendered.text, blocks=rendered.blocks, **kwargs)
            except Exception as e:  # the URL's host would be in str(e): name the kind only
                why = f"cannot reach it ({type(e).__name__})"
            else:
                if response.status_code == 200:
                    return
                if response.status_code != 429 and response.status_code < 500:
                    log.warning("response_url answered %s", response.status_code)
                    raise ResponseUrlFailed(f"response_url answered {response.status_code}")
                why = f"it answered {response.status_code}"
                wait = _seconds(response.headers.get("Retry-After"), default=wait)
            if time.monotonic() + wait >= deadline:
                log.warning("response_url did not take the message within %.0f s: %s", RESPONSE_URL_BOUND, why)
                raise ResponseUrlFailed(why)
            await asyncio.sleep(wait)


def _error(e: SlackApiError) -> str:
    return str(e.response.get("error") or "") if e.response is not None else ""


def _why(e: SlackApiError | DeliveryFailed) -> str:
    return e.reason if isinstance(e, DeliveryFailed) else _error(e)


def _seconds(value: Any, *, default: float) -> float:
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return default
