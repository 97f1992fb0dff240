"""Who a Slack user is by email (``users.info``, scope ``users:read.email``), for automatic linking.

Slack has no directory groups pvebot maps to roles: :meth:`SlackDirectory.groups_of` is always empty.
"""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from adapters.slack.notifier import api_url

log = logging.getLogger(__name__)


class SlackDirectory:
    """:class:`core.ports.Directory` over the Slack Web API of the bot's workspace."""

    def __init__(self, token: str, base_url: str | None = None) -> None:
        self._client = WebClient(token=token, base_url=api_url(base_url), timeout=10,
                                 retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])

    def __repr__(self) -> str:
        return "SlackDirectory()"

    def email_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        """The user's confirmed profile email, or None (bots, other workspaces, missing scope, errors)."""
        if platform != "slack":
            return None
        try:
            user = self._client.users_info(user=user_id).get("user") or {}
        except SlackApiError as e:
            log.info("users.info failed for a Slack user: %s", e.response.get("error"))
            return None
        except Exception:
            log.warning("users.info failed", exc_info=True)
            return None
        if user.get("is_bot") or user.get("deleted") or user.get("is_restricted"):
            return None
        # a user of another workspace (Slack Connect) could carry any address: only our own team counts
        if user.get("team_id") and user.get("team_id") != workspace_id:
            return None
        email = (user.get("profile") or {}).get("email")
        return str(email).strip().lower() if email else None

    def name_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        """The user's real name (display name failing that), or None."""
        if platform != "slack":
            return None
        try:
            user = self._client.users_info(user=user_id).get("user") or {}
        except Exception:  # a name is a nicety: the caller falls back to the email's local part
            log.info("users.info failed for a Slack user's name")
            return None
        profile = user.get("profile") or {}
        name = str(profile.get("real_name") or user.get("real_name") or profile.get("display_name") or "").strip()
        return name or None

    def groups_of(self, platform: str, workspace_id: str, user_id: str) -> frozenset[str]:
        return frozenset()
