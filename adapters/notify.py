"""Routes notifications to the notifier of each conversation's platform."""

from __future__ import annotations

from collections.abc import Mapping

from core.chat import ConversationRef, MessageRef, Reply
from core.errors import ExternalSystemError
from core.ports import Directory, Notifier


class NotifierRouter:
    """:class:`core.ports.Notifier` that hands each message to its platform's notifier."""

    def __init__(self, notifiers: Mapping[str, Notifier]) -> None:
        self._notifiers = dict(notifiers)

    def add(self, platform: str, notifier: Notifier) -> None:
        self._notifiers[platform] = notifier

    def _for(self, platform: str) -> Notifier:
        notifier = self._notifiers.get(platform)
        if notifier is None:
            raise ExternalSystemError(f"pvebot is not connected to {platform}")
        return notifier

    def post(self, conversation: ConversationRef, reply: Reply) -> MessageRef:
        return self._for(conversation.platform).post(conversation, reply)

    def update(self, message: MessageRef, reply: Reply) -> None:
        self._for(message.conversation.platform).update(message, reply)


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
