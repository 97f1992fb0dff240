"""Routes notifications to the notifier of each conversation's platform."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from core.chat import ConversationRef, MessageRef, Reply
from core.errors import ChannelGone, ExternalSystemError, Throttled
from core.model import ChatIdentity
from core.ports import Directory, Notifier
from core.telemetry import NullTelemetry, Telemetry


def _is_429(error: BaseException) -> bool:
    """An HTTP 429 that outlasted the notifier's own retries (slack_sdk's and requests' errors carry a response)."""
    for e in (error, error.__cause__):
        response = getattr(e, "response", None)
        if getattr(response, "status_code", None) == 429 or getattr(e, "status_code", None) == 429:
            return True
    return False


# Slack's answers for a channel that will not take posts again until someone acts
_SLACK_GONE = frozenset({"channel_not_found", "is_archived", "not_in_channel", "channel_is_archived",
                         "account_inactive", "team_access_not_granted"})
_TEAMS_STATUS = re.compile(r"^Teams answered HTTP (\d{3})$")


def classify(error: Exception) -> Exception:
    """A platform's failure to post as the core's :class:`ChannelGone` or :class:`Throttled`, else as it is.

    The notification outbox decides from these whether to retry, wait, or give a channel up; the
    vendor errors stay in the adapters (slack_sdk's carry ``response["error"]``, the Teams notifier says
    the HTTP status).
    """
    if isinstance(error, ChannelGone | Throttled):
        return error
    response = getattr(error, "response", None)
    code = response.get("error") if hasattr(response, "get") else None
    if code in _SLACK_GONE:
        return ChannelGone(f"Slack says {code}")
    if code == "ratelimited" or _is_429(error):
        return Throttled(retry_after=_retry_after(response))
    if type(error).__name__ == "DeliveryFailed":  # the Slack outbox's bound ran out (429s, unreachable)
        return Throttled()
    if isinstance(error, ExternalSystemError):
        match = _TEAMS_STATUS.match(error.user_message)
        if match:
            status = int(match.group(1))
            if status in (403, 404):
                return ChannelGone(f"Teams answered HTTP {status}")
            if status == 429 or status >= 500:
                return Throttled()
    return error


def _retry_after(response: object) -> float | None:
    headers = getattr(response, "headers", None) or {}
    for key, value in dict(headers).items():
        if str(key).lower() == "retry-after":
            try:
                return float(value[0] if isinstance(value, list) else value)
            except (TypeError, ValueError):
                return None
    return None


class NotifierRouter:
    """:class:`core.ports.Notifier` that hands each message to its platform's notifier."""

    def __init__(self, notifiers: Mapping[str, Notifier], *, telemetry: Telemetry | None = None) -> None:
        self._notifiers = dict(notifiers)
        self.telemetry: Telemetry = telemetry or NullTelemetry()

    def add(self, platform: str, notifier: Notifier) -> None:
        self._notifiers[platform] = notifier

    def _for(self, platform: str) -> Notifier:
        notifier = self._notifiers.get(platform)
        if notifier is None:
            raise ExternalSystemError(f"pvebot is not connected to {platform}")
        return notifier

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        notifier = self._for(conversation.platform)
        try:
            with self._measured(conversation.platform):
                return notifier.post(conversation, reply)
        except Exception as e:
            classified = classify(e)
            if classified is e:
                raise
            raise classified from e

    def direct(self, identity: ChatIdentity, *, near: ConversationRef) -> ConversationRef | None:
        """:class:`core.ports.DirectMessages` through the identity's platform, None where it has no such thing."""
        notifier = self._notifiers.get(identity.platform)
        opener = getattr(notifier, "direct", None)
        if opener is None:
            return None
        with self._measured(identity.platform):
            found: ConversationRef | None = opener(identity, near=near)
        return found

    def update(self, message: MessageRef, reply: Reply) -> None:
        notifier = self._for(message.conversation.platform)
        with self._measured(message.conversation.platform):
            notifier.update(message, reply)

    @contextmanager
    def _measured(self, platform: str) -> Iterator[None]:
        # counted here, around each platform's notifier, so that their own posting code stays as it is
        try:
            yield
        except Exception as e:
            self.telemetry.chat_post(platform=platform, outcome="rate_limited" if _is_429(e) else "error")
            raise
        self.telemetry.chat_post(platform=platform, outcome="ok")


class DirectoryRouter:
    """:class:`core.ports.Directory` over each platform's directory."""

    def __init__(self, directories: Mapping[str, Directory] | None = None) -> None:
        self._directories = dict(directories or {})

    def add(self, platform: str, directory: Directory) -> None:
        self._directories[platform] = directory

    def email_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        directory = self._directories.get(platform)
        return None if directory is None else directory.email_of(platform, workspace_id, user_id)

    def name_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        directory = self._directories.get(platform)
        return None if directory is None else directory.name_of(platform, workspace_id, user_id)

    def groups_of(self, platform: str, workspace_id: str, user_id: str) -> frozenset[str]:
        directory = self._directories.get(platform)
        return frozenset() if directory is None else directory.groups_of(platform, workspace_id, user_id)
