"""Our edge in front of botbuilder: every activity's JWT is checked here, and failures answer 401, never 500.

botbuilder 4.17.1 raises ``PermissionError`` for some failures but lets others escape as anything
(``jwt.ExpiredSignatureError``, ``jwt.DecodeError``, an ``IndexError`` for an unknown key id, …), which
its aiohttp integration turns into 500. So we authenticate first, on our own, and hand the result to
``CloudAdapter.process_activity`` (which accepts an ``AuthenticateRequestResult``).
"""

from __future__ import annotations

import asyncio
import logging

from botbuilder.schema import Activity
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConfiguration,
    BotFrameworkAuthentication,
    BotFrameworkAuthenticationFactory,
)
from botframework.connector.auth.jwt_token_extractor import JwtTokenExtractor

from adapters.teams.setup import CONNECTOR_AUDIENCE, EMULATOR_OPENID_METADATA_URL, TOKEN_ISSUER, TeamsConfig
from adapters.teams.tokens import AppTokens, TokenCredentialsFactory

log = logging.getLogger(__name__)


class Unauthorized(Exception):
    """The request is not from the Bot Framework for our app (answered 401)."""


def build_authentication(config: TeamsConfig, tokens: AppTokens | None) -> BotFrameworkAuthentication:
    """botbuilder's authentication, parameterised so that every URL comes from our settings."""
    return BotFrameworkAuthenticationFactory.create(
        validate_authority=True,
        to_channel_from_bot_login_url=f"{config.login_url.rstrip('/')}/{config.tenant_id or 'botframework.com'}",
        to_channel_from_bot_oauth_scope=CONNECTOR_AUDIENCE,
        to_bot_from_channel_token_issuer=TOKEN_ISSUER,
        oauth_url=TOKEN_ISSUER,
        to_bot_from_channel_open_id_metadata_url=config.openid_metadata_url,
        to_bot_from_emulator_open_id_metadata_url=EMULATOR_OPENID_METADATA_URL,
        caller_id="urn:botframework:azure",
        credential_factory=TokenCredentialsFactory(config.app_id, tokens),
        auth_configuration=AuthenticationConfiguration(),
    )


async def authenticate(
    auth: BotFrameworkAuthentication, *, config: TeamsConfig, activity: Activity, header: str | None
) -> AuthenticateRequestResult:
    """Validate the request's bearer token against the activity (audience, issuer, expiry, serviceurl).

    Raises:
        Unauthorized: whatever went wrong; the reason goes to the log, never to the caller.
    """
    if config.auth_enabled and not (header or "").strip():
        raise Unauthorized("no Authorization header")
    try:
        result = await auth.authenticate_request(activity, header or None)
    except Exception as e:
        # the exception text can hold claims (app ids, URLs): log the kind only
        raise Unauthorized(type(e).__name__) from None
    if config.auth_enabled and (result is None or result.claims_identity is None
                                or not result.claims_identity.is_authenticated):
        raise Unauthorized("no identity")
    return result


async def prefetch_openid_metadata(config: TeamsConfig) -> None:
    """Load the signing keys off the event loop: botbuilder fetches them with a blocking ``requests.get``.

    Done at start so the first activities don't stall the loop; botbuilder refreshes them daily (blocking, once).
    """
    if not config.auth_enabled:
        return
    metadata = JwtTokenExtractor.get_open_id_metadata(config.openid_metadata_url)
    try:
        # _refresh is private but is the only way to load the keys without asking for one by id
        await asyncio.to_thread(asyncio.run, metadata._refresh())
    except Exception:
        log.warning("could not load the Bot Framework signing keys yet (%s); will retry on the first activity",
                    config.openid_metadata_url, exc_info=True)
