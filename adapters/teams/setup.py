"""Reading the Teams settings once: is Teams on, does it authenticate, where are its token, metadata and Graph URLs.

Without an app id Teams stays off unless ``PVEBOT_TEAMS_EMULATOR=1`` asks for the unauthenticated
emulator mode: a Slack-only deployment must not serve an ``/api/messages`` where anyone can act as
any Teams user.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adapters.teams.directory import GRAPH_URL, TeamsDirectory
from adapters.teams.tokens import PUBLIC_LOGIN_URL, AppTokens

if TYPE_CHECKING:
    from adapters.teams.directory import IdentityAudience
    from adapters.teams.notifier import TeamsNotifier

log = logging.getLogger("pvebot.teams")

PUBLIC_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
EMULATOR_OPENID_METADATA_URL = "https://login.microsoftonline.com/botframework.com/v2.0/.well-known/openid-configuration"
TOKEN_ISSUER = "https://api.botframework.com"
CONNECTOR_AUDIENCE = "https://api.botframework.com"


@dataclass(frozen=True)
class TeamsConfig:
    app_id: str | None
    tenant_id: str | None
    openid_metadata_url: str
    login_url: str
    emulator: bool
    graph_url: str = GRAPH_URL
    password: str | None = field(default=None, repr=False)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.app_id)

    @property
    def enabled(self) -> bool:
        """Serve Teams: with an app id, or without one only when the emulator mode is asked for explicitly."""
        return self.auth_enabled or self.emulator

    def tokens(self) -> AppTokens | None:
        if not self.app_id:
            return None
        return AppTokens(app_id=self.app_id, password=self.password or "", tenant_id=self.tenant_id,
                         login_url=self.login_url)


def config_of(settings: Any) -> TeamsConfig:
    return TeamsConfig(
        app_id=settings.microsoft_app_id,
        password=settings.microsoft_app_password,
        tenant_id=settings.microsoft_app_tenant_id,
        openid_metadata_url=settings.teams_openid_metadata_url or PUBLIC_OPENID_METADATA_URL,
        login_url=settings.teams_login_url or PUBLIC_LOGIN_URL,
        emulator=settings.teams_emulator,
        graph_url=settings.graph_url or GRAPH_URL,
    )


@dataclass
class TeamsParts:
    """Teams' outbound side, built once per process by ``bot/bootstrap.py``: the endpoint reuses it."""

    config: TeamsConfig
    tokens: AppTokens | None  # one token cache for the notifier, the directory and the endpoint
    notifier: TeamsNotifier
    directory: TeamsDirectory
    audience: IdentityAudience  # pvebot user ids → AAD object ids, for cards only approvers see
