"""App-only tokens from Azure AD (msal client credentials), for the Bot Connector and Microsoft Graph.

One :class:`AppTokens` per process serves botbuilder's outgoing calls (through
:class:`TokenCredentialsFactory`), the proactive :class:`~adapters.teams.notifier.TeamsNotifier`
and the directory. msal caches each token until shortly before it expires.
"""

from __future__ import annotations

import threading
from typing import Any

import msal
import requests
from botframework.connector.auth import ServiceClientCredentialsFactory
from msrest.authentication import Authentication

from core.errors import ExternalSystemError

PUBLIC_LOGIN_URL = "https://login.microsoftonline.com"
CONNECTOR_SCOPE = "https://api.botframework.com/.default"
# multi-tenant Bot Framework registrations get their connector tokens from this tenant
MULTI_TENANT = "botframework.com"


class AppTokens:
    """Client-credential tokens for one app registration; the secret never leaves this object."""

    def __init__(self, *, app_id: str, password: str, tenant_id: str | None,
                 login_url: str = PUBLIC_LOGIN_URL) -> None:
        self.app_id = app_id
        self.tenant_id = tenant_id
        self.login_url = login_url.rstrip("/")
        self._password = password
        self._apps: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AppTokens(app_id={self.app_id!r}, tenant_id={self.tenant_id!r}, login_url={self.login_url!r})"

    def _app(self, tenant: str) -> Any:
        with self._lock:
            app = self._apps.get(tenant)
            if app is None:
                custom = self.login_url != PUBLIC_LOGIN_URL
                app = msal.ConfidentialClientApplication(
                    self.app_id,
                    client_credential=self._password,
                    authority=f"{self.login_url}/{tenant}",
                    # a sovereign or private login host is not in msal's list: skip discovery via the public cloud
                    instance_discovery=False if custom else None,
                    # msal waits forever by default; every caller here is a chat turn or a job
                    timeout=10,
                )
                self._apps[tenant] = app
            return app

    def token(self, scope: str = CONNECTOR_SCOPE, *, tenant: str | None = None) -> str:
        """A bearer token for ``scope``; Graph calls name the user's tenant, the connector uses ours.

        Raises:
            ExternalSystemError: Azure AD refused or could not be reached (no detail: it may hold the app id).
        """
        tenant = tenant or self.tenant_id or MULTI_TENANT
        try:
            result = self._app(tenant).acquire_token_for_client(scopes=[scope])
        except (requests.RequestException, ValueError) as e:
            raise ExternalSystemError("cannot reach Azure AD for a Teams token") from e
        token = result.get("access_token") if isinstance(result, dict) else None
        if not token:
            raise ExternalSystemError(f"Azure AD refused a Teams token ({(result or {}).get('error', 'unknown')})")
        return str(token)


class _BearerCredentials(Authentication):  # type: ignore[misc]
    """msrest credentials that botbuilder's ConnectorClient signs its requests with."""

    def __init__(self, tokens: AppTokens | None, scope: str) -> None:
        self._tokens, self._scope = tokens, scope

    def signed_session(self, session: requests.Session | None = None) -> requests.Session:
        session = super().signed_session(session)
        if self._tokens is not None:
            session.headers["Authorization"] = f"Bearer {self._tokens.token(self._scope)}"
        return session


class TokenCredentialsFactory(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """botbuilder's credential factory over :class:`AppTokens`, so one token source (and login URL) serves all."""

    def __init__(self, app_id: str | None, tokens: AppTokens | None) -> None:
        self.app_id = app_id
        self._tokens = tokens

    async def is_valid_app_id(self, app_id: str) -> bool:
        return bool(self.app_id) and app_id == self.app_id

    async def is_authentication_disabled(self) -> bool:
        return not self.app_id

    async def create_credentials(self, app_id: str, oauth_scope: str, login_endpoint: str,
                                 validate_authority: bool) -> Authentication:
        if not self.app_id:
            return _BearerCredentials(None, "")
        if app_id != self.app_id:
            raise PermissionError("credentials asked for another app id")
        scope = oauth_scope if oauth_scope.endswith("/.default") else f"{oauth_scope.rstrip('/')}/.default"
        return _BearerCredentials(self._tokens, scope)
