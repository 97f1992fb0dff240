"""Posts and edits Slack messages with the bot token, from worker threads and processes.

Job progress outlives a slash command's ``response_url`` (5 uses in 30 minutes), so it
always goes through ``chat.postMessage`` / ``chat.update``, handed to the process's one
:class:`adapters.slack.pacing.SlackOutbox` (paced per channel, 429s waited out, a verdict for
every call within its bound). A post waits for its ``ts``; an edit does not wait: the job
goes on following its task while the edit waits for its channel's turn, and a newer edit of
the same message replaces it there (so a busy channel sees the latest state, not every step).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from adapters.slack.pacing import DEFAULT_HTTP_TIMEOUT, SlackOutbox
from adapters.slack.render import render
from core.chat import ConversationRef, MessageRef, Reply
from core.errors import ExternalSystemError
from core.model import ChatIdentity

log = logging.getLogger(__name__)
DEFAULT_API_URL = "https://slack.com/api/"


def api_url(base_url: str | None) -> str:
    """The Web API base URL with the trailing slash slack_sdk needs."""
    url = base_url or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def outbox_client(token: str, *, base_url: str | None = None, timeout: float = DEFAULT_HTTP_TIMEOUT) -> WebClient:
    """The outbox's WebClient: no retry handlers, the outbox retries itself, bounded by time."""
    return WebClient(token=token, base_url=api_url(base_url), timeout=int(timeout), retry_handlers=[])


class SlackNotifier:
    """:class:`core.ports.Notifier` for Slack (synchronous: it runs where the jobs run)."""

    def __init__(self, outbox: SlackOutbox) -> None:
        self.outbox = outbox

    def __repr__(self) -> str:
        return "SlackNotifier()"

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        rendered = render(reply)
        response = self.outbox.call("chat.postMessage", {
            "channel": conversation.channel, "thread_ts": conversation.thread, "text": rendered.text,
            "blocks": rendered.blocks, "unfurl_links": False, "unfurl_media": False,
        })
        return MessageRef(conversation=conversation, message_id=str(response["ts"]))

    def direct(self, identity: ChatIdentity, *, near: ConversationRef) -> ConversationRef | None:
        """The bot's direct message with that member (``conversations.open``; Slack answers the same one again)."""
        # not a chat.* call: the outbox paces messages per channel, and this one has no channel yet
        try:
            response = self.outbox.client.conversations_open(users=identity.platform_user_id)
        except SlackApiError as e:
            raise ExternalSystemError(f"Slack refused a direct message: {e.response.get('error')}") from e
        except OSError as e:
            raise ExternalSystemError("cannot reach Slack") from e
        channel = (response.get("channel") or {}).get("id")
        return ConversationRef(platform="slack", channel=str(channel)) if channel else None

    def update(self, message: MessageRef, reply: Reply) -> None:
        rendered = render(reply)
        sent = self.outbox.submit("chat.update", {
            "channel": message.conversation.channel, "ts": message.message_id, "text": rendered.text,
            "blocks": rendered.blocks,
        })
        sent.add_done_callback(_log_refusal)


def _log_refusal(sent: Future[Any]) -> None:
    # the outbox logs what did not get through in time; a refusal (message_not_found, …) is said here
    error = sent.exception()
    if isinstance(error, SlackApiError):
        log.warning("Slack refused an edit: %s", error.response.get("error"))
