"""Who a Teams user is, for automatic linking and for buttons only some people see.

- :class:`TeamsDirectory` (:class:`core.ports.Directory`): a member's email or UPN, asked of the
  conversation they wrote in (``GET {serviceUrl}/v3/conversations/{id}/members/{aadObjectId}``, the
  call behind botbuilder's ``TeamsInfo.get_member``), with our app token.
- :class:`IdentityAudience`: pvebot user ids → their linked AAD object ids in a tenant (``refresh.userIds``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from urllib.parse import quote

import requests

from adapters.teams.tokens import AppTokens
from core.chat import ConversationRef
from core.ports import UnitOfWorkFactory
from core.principal import Scope

log = logging.getLogger(__name__)


class TeamsDirectory:
    """Looks members up in the conversation they last wrote in (remembered per bot process, bounded)."""

    def __init__(self, *, tokens: AppTokens | None, timeout: float = 5.0, remember_at_most: int = 10_000) -> None:
        self.tokens = tokens
        self.timeout = timeout
        self._limit = remember_at_most
        self._seen: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._session = requests.Session()

    def remember(self, conversation: ConversationRef, *, workspace_id: str, user_id: str) -> None:
        service_url = conversation.get("service_url")
        if not service_url:
            return
        with self._lock:
            self._seen[(workspace_id, user_id)] = (service_url, conversation.channel)
            self._seen.move_to_end((workspace_id, user_id))
            while len(self._seen) > self._limit:
                self._seen.popitem(last=False)

    def email_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        if platform != "teams":
            return None
        with self._lock:
            where = self._seen.get((workspace_id, user_id))
        if where is None:
            return None
        service_url, conversation_id = where
        url = (f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation_id, safe='')}"
               f"/members/{quote(user_id, safe='')}")
        headers = {} if self.tokens is None else {"Authorization": f"Bearer {self.tokens.token()}"}
        try:
            response = self._session.get(url, headers=headers, timeout=self.timeout)
            if response.status_code != 200:
                log.info("Teams member lookup answered HTTP %s", response.status_code)
                return None
            member = response.json()
        except Exception:  # unreachable, not JSON, or no token: linking just does not happen
            log.warning("Teams member lookup failed", exc_info=True)
            return None
        # UPN is the sign-in name; email can be empty for guests or unlicensed accounts
        email = member.get("email") or member.get("userPrincipalName")
        return str(email).lower() if email and "@" in str(email) else None


class IdentityAudience:
    """pvebot user ids → the AAD object ids they are linked with in one tenant."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    def __call__(self, user_ids: Sequence[int], tenant_id: str) -> list[str]:
        found: list[str] = []
        with self._uow_factory(Scope.everything()) as uow:
            for user_id in user_ids:
                found.extend(
                    i.platform_user_id for i in uow.identities.for_user(user_id)
                    if i.platform == "teams" and (not tenant_id or i.workspace_id == tenant_id)
                )
        return found
