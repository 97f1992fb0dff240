"""Routes notifications to the notifier of each conversation's platform."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from core.chat import ConversationRef, MessageRef, Reply
from core.errors import ExternalSystemError
from core.ports import Directory, Notifier
from core.telemetry import NullTelemetry, Telemetry


def _is_429(error: BaseException) -> bool:
    """An HTTP 429 that outlasted the notifier's own retries (slack_sdk's and requests' errors carry a response)."""
    for e in (error, error.__cause__):
        response = getattr(e, "response", None)
        if getattr(response, "status_code", None) == 429 or getattr(e, "status_code", None) == 429:
            return True
    return False


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
        with self._measured(conversation.platform):
            return notifier.post(conversation, reply)

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
