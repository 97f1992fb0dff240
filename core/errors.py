"""The errors the domain raises.

Every error carries a ``user_message`` that is safe to show in any chat: it never holds a
host name, a path, a token or another tenant's data. The dispatcher shows that message and
nothing else; anything that is not a :class:`BotError` becomes "internal error, ref <id>".
"""

from __future__ import annotations


class BotError(Exception):
    """Base of every error that the user may be told about."""

    default_message = "something went wrong"

    def __init__(self, user_message: str | None = None) -> None:
        self.user_message = user_message or self.default_message
        super().__init__(self.user_message)


class NotLinked(BotError):
    """The chat identity is unknown, or its user is inactive."""

    default_message = "you are not linked to pvebot; ask your administrator"


class PermissionDenied(BotError):
    """The principal's role does not allow the action."""

    default_message = "your role does not allow that"


class NotFound(BotError):
    """The thing does not exist, or it is outside the caller's scope (both answer alike)."""

    default_message = "not found"


class InvalidArguments(BotError):
    """The caller's input is malformed."""

    default_message = "invalid arguments"


class Conflict(BotError):
    """The action clashes with the current state (already decided, locked, quota, ...)."""

    default_message = "that conflicts with the current state"


class ExternalSystemError(BotError):
    """Proxmox, SSH or another system we depend on failed; the message says how, safely."""

    default_message = "an external system failed"


class RateLimited(BotError):
    """Too many commands from one identity in a short time."""

    default_message = "too many commands at once; wait a moment and try again"


class ConfigurationError(BotError):
    """Provisioning input or settings are invalid; the message names where."""

    default_message = "invalid configuration"


class DuplicateRequest(Conflict):
    """A record for this chat delivery exists already (a platform re-delivered it concurrently)."""

    default_message = "that request was received already"


class ChannelGone(ExternalSystemError):
    """The platform says a channel cannot be posted into any more (archived, deleted, the bot removed)."""

    default_message = "that channel is gone, or pvebot is no longer in it"


class Throttled(ExternalSystemError):
    """The platform asked us to come back later (429, 5xx); ``retry_after`` seconds when it said."""

    default_message = "the chat platform is busy; the message will be sent later"

    def __init__(self, user_message: str | None = None, *, retry_after: float | None = None) -> None:
        super().__init__(user_message)
        self.retry_after = retry_after


class HostKeyMismatch(ExternalSystemError):
    """A node showed a host key other than its pin: the connection was refused before anything was sent."""

    default_message = "🔒 security: the node's host key changed; nothing was sent"

    def __init__(self, user_message: str | None = None, *, seen: str = "", pinned: str = "") -> None:
        super().__init__(user_message)
        self.seen, self.pinned = seen, pinned


class HostKeyUnknown(ExternalSystemError):
    """No host key is pinned for a node yet: nothing is sent until one is (``cluster trust``)."""

    default_message = "no host key is pinned for this node"

    def __init__(self, user_message: str | None = None, *, seen: str = "") -> None:
        super().__init__(user_message)
        self.seen = seen


class LoginFailed(ExternalSystemError):
    """The node refused pvebot's key or the given password."""

    default_message = "the node refused the login"
