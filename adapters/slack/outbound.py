"""How the bot answers in Slack, asynchronously: public replies, ephemeral errors, edits and files.

Public replies go through ``chat.postMessage`` so their ``ts`` is known (jobs thread under
it, approval cards get edited). Private replies and errors are ephemeral
(``chat.postEphemeral``), falling back to the request's ``response_url`` where the bot
cannot post (a DM between two other people, a channel it is not in).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack.render import Rendered, render
from adapters.slack.translate import Incoming
from core.chat import ConversationRef, MessageRef, Reply, Severity

log = logging.getLogger(__name__)
# errors that mean "the bot cannot write here", not "Slack is broken"
_CANNOT_POST = {"not_in_channel", "channel_not_found", "is_archived", "restricted_action", "cant_update_message",
                "message_not_found"}


def is_private(reply: Reply) -> bool:
    return reply.private or reply.severity is Severity.ERROR


class SlackPoster:
    """Sends rendered replies with the bolt app's client (bot token, shared HTTP session)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

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
            response = await self.client.chat_postMessage(
                channel=conversation.channel, thread_ts=conversation.thread, text=rendered.text,
                blocks=rendered.blocks, unfurl_links=False, unfurl_media=False,
            )
        except SlackApiError as e:
            if _error(e) not in _CANNOT_POST or not response_url:
                raise
            log.info("cannot post in %s (%s): answering through response_url", conversation.channel, _error(e))
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
            await self.client.chat_postEphemeral(
                channel=conversation.channel, user=user_id, thread_ts=conversation.thread,
                text=rendered.text, blocks=rendered.blocks,
            )
        except SlackApiError as e:
            if not response_url:
                raise
            log.info("ephemeral message refused (%s): answering through response_url", _error(e))
            await self._respond(response_url, rendered, response_type="ephemeral")

    async def update(self, message: MessageRef, blocks: list[dict[str, Any]], text: str) -> None:
        await self.client.chat_update(channel=message.conversation.channel, ts=message.message_id, text=text,
                                      blocks=blocks)

    async def replace(self, response_url: str, rendered: Rendered) -> None:
        """Replace the message a button was clicked on, ephemeral ones included."""
        await self._respond(response_url, rendered, replace_original=True)

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
        webhook = AsyncWebhookClient(response_url, session=self.client.session, timeout=10)
        response = await webhook.send(text=rendered.text, blocks=rendered.blocks, **kwargs)
        if response.status_code != 200:
            log.warning("response_url answered %s", response.status_code)


def _error(e: SlackApiError) -> str:
    return str(e.response.get("error") or "") if e.response is not None else ""
