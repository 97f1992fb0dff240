"""Proactive Teams messages: :class:`core.ports.Notifier` over the Bot Connector REST API, synchronously.

It runs in RQ worker threads and processes, away from any turn: the :class:`ConversationRef` that
:mod:`adapters.teams.translate` made holds the serviceUrl, tenant and bot ids, so nothing else is needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import requests

from adapters.teams import render
from adapters.teams.tokens import AppTokens
from core.chat import ConversationRef, MessageRef, Reply
from core.errors import ExternalSystemError
from core.model import ChatIdentity

log = logging.getLogger(__name__)

# pvebot user ids of a button's ``only_for`` → their AAD object ids in a tenant
Audience = Callable[[Sequence[int], str], list[str]]


def activities_url(service_url: str, conversation_id: str, activity_id: str | None = None) -> str:
    """``{serviceUrl}/v3/conversations/{id}/activities[/{activityId}]``, keeping the serviceUrl's own path."""
    url = f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation_id, safe='')}/activities"
    return f"{url}/{quote(activity_id, safe='')}" if activity_id else url


def audience_of(reply: Reply, conversation: ConversationRef, audience: Audience | None) -> list[str]:
    restricted = sorted({u for a in reply.actions for u in a.only_for})
    if not restricted or audience is None:
        return []
    return audience(restricted, conversation.get("tenant_id") or "")


THROTTLE_ATTEMPTS = 4
MAX_RETRY_AFTER = 30.0


def retry_after(header: str | None) -> float:
    """Seconds to wait from a Retry-After header (seconds form), 1 s when absent or unreadable."""
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(header))) if header else 1.0
    except ValueError:
        return 1.0


class TeamsNotifier:
    """Posts a job's card into a conversation (threaded under ``ConversationRef.thread``) and edits it in place."""

    def __init__(self, settings: Any, *, tokens: AppTokens | None = None, audience: Audience | None = None,
                 timeout: float = 10.0, on_rate_limited: Callable[[], None] | None = None) -> None:
        # called at each 429 the connector answers (the metrics count them); must not raise
        self._on_rate_limited = on_rate_limited
        self.app_id: str | None = settings.microsoft_app_id
        self.tokens = tokens
        self.audience = audience
        self.timeout = timeout
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"TeamsNotifier(app_id={self.app_id!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.tokens is not None:  # no app id: the emulator, which takes no token
            headers["Authorization"] = f"Bearer {self.tokens.token()}"
        return headers

    def _activity(self, conversation: ConversationRef, reply: Reply) -> dict[str, Any]:
        activity = render.message(reply, audience=audience_of(reply, conversation, self.audience))
        activity["from"] = {"id": conversation.get("bot_id") or self.app_id or "pvebot",
                            "name": conversation.get("bot_name") or "pvebot"}
        activity["conversation"] = {"id": conversation.channel}
        activity["channelId"] = conversation.get("channel_id") or "msteams"
        return activity

    def _send(self, method: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(THROTTLE_ATTEMPTS):
            try:
                response = self._session.request(method, url, json=body, headers=self._headers(),
                                                 timeout=self.timeout)
            except requests.RequestException as e:
                raise ExternalSystemError("cannot reach Teams") from e
            if response.status_code == 429 and self._on_rate_limited is not None:
                self._on_rate_limited()
            if response.status_code != 429 or attempt == THROTTLE_ATTEMPTS - 1:
                break
            # Teams throttles per conversation; it says how long to wait
            time.sleep(retry_after(response.headers.get("Retry-After")))
        if response.status_code >= 400:
            # the body can quote the conversation: log the status only
            raise ExternalSystemError(f"Teams answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            return {}
        return answer if isinstance(answer, dict) else {}

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        service_url = conversation.get("service_url")
        if not service_url:
            raise ExternalSystemError("this Teams conversation has no serviceUrl")
        activity = self._activity(conversation, reply)
        if conversation.thread:
            activity["replyToId"] = conversation.thread
        url = activities_url(service_url, conversation.channel, conversation.thread)
        answer = self._send("POST", url, activity)
        if not answer.get("id"):
            raise ExternalSystemError("Teams did not say which message it posted")
        return MessageRef(conversation=conversation, message_id=str(answer["id"]))

    def direct(self, identity: ChatIdentity, *, near: ConversationRef) -> ConversationRef | None:
        """A personal conversation with the member, created through the connector (``POST /v3/conversations``).

        Only from a Teams conversation in the member's tenant: its serviceUrl and the bot's id are the
        ones to create it with. The member is named by AAD object id, the tenant in ``channelData``.
        """
        service_url = near.get("service_url")
        tenant = identity.workspace_id
        if near.platform != "teams" or not service_url or (near.get("tenant_id") or tenant) != tenant:
            return None
        bot_id = near.get("bot_id") or self.app_id or "pvebot"
        body = {"isGroup": False, "bot": {"id": bot_id}, "members": [{"id": identity.platform_user_id}],
                "tenantId": tenant, "channelData": {"tenant": {"id": tenant}}}
        answer = self._send("POST", f"{service_url.rstrip('/')}/v3/conversations", body)
        conversation_id = answer.get("id")
        if not isinstance(conversation_id, str) or not conversation_id:
            raise ExternalSystemError("Teams did not say which conversation it created")
        details = {"service_url": service_url, "tenant_id": tenant, "bot_id": bot_id,
                   "bot_name": near.get("bot_name") or "", "channel_id": near.get("channel_id") or "msteams",
                   "conversation_type": "personal"}
        return ConversationRef(platform="teams", channel=conversation_id,
                               extra=tuple(sorted((k, v) for k, v in details.items() if v)))

    def update(self, message: MessageRef, reply: Reply) -> None:
        conversation = message.conversation
        service_url = conversation.get("service_url")
        if not service_url:
            raise ExternalSystemError("this Teams conversation has no serviceUrl")
        activity = self._activity(conversation, reply)
        activity["id"] = message.message_id
        self._send("PUT", activities_url(service_url, conversation.channel, message.message_id), activity)
