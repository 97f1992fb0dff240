"""Who a Teams user is, for automatic linking and for buttons only some people see.

- :class:`TeamsDirectory` (:class:`core.ports.Directory`): a member's email or UPN and name, asked of the
  conversation they wrote in (``GET {serviceUrl}/v3/conversations/{id}/members/{aadObjectId}``, the
  call behind botbuilder's ``TeamsInfo.get_member``), with our app token; failing that, and for the
  member's Azure AD groups, Microsoft Graph with an app token for the member's tenant
  (``GET /v1.0/users/{id}``, ``POST /v1.0/users/{id}/getMemberGroups``; application permissions
  User.Read.All and GroupMember.Read.All).
- :class:`IdentityAudience`: pvebot user ids → their linked AAD object ids in a tenant (``refresh.userIds``).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from adapters.teams.tokens import AppTokens
from core.chat import ConversationRef
from core.ports import UnitOfWorkFactory
from core.principal import Scope

log = logging.getLogger(__name__)

GRAPH_URL = "https://graph.microsoft.com"


class TeamsDirectory:
    """Looks members up in the conversation they last wrote in (remembered per bot process, bounded) and in Graph.

    Every lookup answers None or nothing on any failure (logged without tokens): linking then just
    does not happen, and the core never sees an exception.
    """

    def __init__(self, *, tokens: AppTokens | None, graph_url: str = GRAPH_URL, timeout: float = 5.0,
                 remember_at_most: int = 10_000) -> None:
        self.tokens = tokens
        self.graph_url = graph_url.rstrip("/")
        # Graph's scope is its host's: graph.microsoft.us/.default in US Government, and so on
        origin = urlsplit(self.graph_url)
        self.graph_scope = f"{origin.scheme}://{origin.netloc}/.default"
        self.timeout = timeout
        self._limit = remember_at_most
        self._seen: OrderedDict[tuple[str, str], tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()
        self._session = requests.Session()

    def __repr__(self) -> str:
        return f"TeamsDirectory(graph_url={self.graph_url!r})"

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
        member = self._member(workspace_id, user_id)
        # UPN is the sign-in name; email can be empty for guests or unlicensed accounts
        email = _address(member.get("email") or member.get("userPrincipalName"))
        if email is None:
            found = self._graph_user(workspace_id, user_id)
            email = _address(found.get("mail") or found.get("userPrincipalName"))
        return email

    def name_of(self, platform: str, workspace_id: str, user_id: str) -> str | None:
        if platform != "teams":
            return None
        name = str(self._member(workspace_id, user_id).get("name") or "").strip()
        if not name:
            name = str(self._graph_user(workspace_id, user_id).get("displayName") or "").strip()
        return name or None

    def groups_of(self, platform: str, workspace_id: str, user_id: str) -> frozenset[str]:
        if platform != "teams":
            return frozenset()
        # transitive membership, Microsoft 365 groups included; at most 11,000 ids (more is HTTP 400)
        found = self._graph("POST", f"/v1.0/users/{quote(user_id, safe='')}/getMemberGroups", tenant=workspace_id,
                            body={"securityEnabledOnly": False}, what="getMemberGroups")
        ids = found.get("value")
        if not isinstance(ids, list):
            return frozenset()
        return frozenset(i.lower() for i in ids if isinstance(i, str))

    # ---- the calls ----

    def _member(self, workspace_id: str, user_id: str) -> dict[str, Any]:
        """The member as the Bot Connector describes it, or {} (unknown conversation, refused, unreachable)."""
        with self._lock:
            where = self._seen.get((workspace_id, user_id))
        if where is None:
            return {}
        service_url, conversation_id = where
        url = (f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation_id, safe='')}"
               f"/members/{quote(user_id, safe='')}")
        try:
            headers = {} if self.tokens is None else {"Authorization": f"Bearer {self.tokens.token()}"}
            response = self._session.get(url, headers=headers, timeout=self.timeout)
            if response.status_code != 200:
                log.info("Teams member lookup answered HTTP %s", response.status_code)
                return {}
            member = response.json()
        except Exception as e:  # unreachable, not JSON, or no token: linking just does not happen
            log.warning("Teams member lookup failed (%s)", type(e).__name__)
            return {}
        return member if isinstance(member, dict) else {}

    def _graph_user(self, workspace_id: str, user_id: str) -> dict[str, Any]:
        return self._graph("GET", f"/v1.0/users/{quote(user_id, safe='')}?$select=mail,userPrincipalName,displayName",
                           tenant=workspace_id, what="user lookup")

    def _graph(self, method: str, path: str, *, tenant: str, what: str,
               body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One Microsoft Graph call with an app token for the member's tenant; {} on any failure."""
        if self.tokens is None:  # the emulator mode has no app registration, hence no Graph
            return {}
        try:
            token = self.tokens.token(self.graph_scope, tenant=tenant or None)
            response = self._session.request(method, self.graph_url + path, json=body, timeout=self.timeout,
                                             headers={"Authorization": f"Bearer {token}"})
        except Exception as e:  # no token or unreachable; the exception's text could carry the request
            log.warning("Microsoft Graph %s failed (%s)", what, type(e).__name__)
            return {}
        if response.status_code != 200:
            # 403: the app lacks User.Read.All / GroupMember.Read.All or admin consent in that tenant
            log.log(logging.INFO if response.status_code == 404 else logging.WARNING,
                    "Microsoft Graph %s answered HTTP %s", what, response.status_code)
            return {}
        try:
            found = response.json()
        except ValueError:
            log.warning("Microsoft Graph %s answered something other than JSON", what)
            return {}
        return found if isinstance(found, dict) else {}


def _address(value: Any) -> str | None:
    text = str(value or "").strip().lower()
    return text if "@" in text else None


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
