"""Posts and edits Slack messages with the bot token, from worker threads and processes.

Job progress outlives a slash command's ``response_url`` (5 uses in 30 minutes), so it
always goes through ``chat.postMessage`` / ``chat.update``. Edits of one message are spaced
at least ``min_edit_interval`` apart (Slack's guidance: about one a second), and a 429 is
retried after its ``Retry-After``.
"""

from __future__ import annotations

import threading
import time

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from adapters.slack.render import render
from core.chat import ConversationRef, MessageRef, Reply

DEFAULT_API_URL = "https://slack.com/api/"


def api_url(base_url: str | None) -> str:
    """The Web API base URL with the trailing slash slack_sdk needs."""
    url = base_url or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


class SlackNotifier:
    """:class:`core.ports.Notifier` for Slack (synchronous: it runs where the jobs run)."""

    def __init__(self, token: str, *, base_url: str | None = None, min_edit_interval: float = 1.0) -> None:
        self._client = WebClient(
            token=token,
            base_url=api_url(base_url),
            timeout=15,
            retry_handlers=[ConnectionErrorRetryHandler(), RateLimitErrorRetryHandler(max_retry_count=3)],
        )
        self.min_edit_interval = min_edit_interval
        self._last_edit: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # the client holds the token: never show it
        return "SlackNotifier()"

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        rendered = render(reply)
        response = self._client.chat_postMessage(
            channel=conversation.channel,
            thread_ts=conversation.thread,
            text=rendered.text,
            blocks=rendered.blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        ts = str(response["ts"])
        with self._lock:
            self._last_edit[(conversation.channel, ts)] = time.monotonic()
        return MessageRef(conversation=conversation, message_id=ts)

    def update(self, message: MessageRef, reply: Reply) -> None:
        self._space_edits(message)
        rendered = render(reply)
        self._client.chat_update(
            channel=message.conversation.channel, ts=message.message_id, text=rendered.text, blocks=rendered.blocks
        )

    def _space_edits(self, message: MessageRef) -> None:
        """Wait until this message may be edited again, then claim the slot."""
        key = (message.conversation.channel, message.message_id)
        with self._lock:
            now = time.monotonic()
            last = self._last_edit.get(key)
            due = now if last is None else max(now, last + self.min_edit_interval)
            self._last_edit[key] = due
            if len(self._last_edit) > 10000:  # forget old messages; a fresh start only risks one early edit
                self._last_edit = {k: v for k, v in self._last_edit.items() if v > now - 60}
        if due > now:
            time.sleep(due - now)
