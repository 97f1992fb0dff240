"""A fake Bot Framework on loopback: connector, OpenID metadata + JWKS, an Azure AD token endpoint and Graph.

It runs in its own thread and event loop, because botbuilder fetches signing keys and msal fetches
tokens with blocking ``requests`` calls from the bot's loop. The connector records every activity
posted or updated; tokens are signed with a locally generated RSA key, like the Bot Framework's.
The fake Microsoft Graph (``users/{id}`` and ``users/{id}/getMemberGroups``, over HTTPS) answers only
a bearer token that the fake Azure AD issued for Graph's scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import itertools
import json
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

APP_ID = "00000000-aaaa-4bbb-8ccc-000000000001"
APP_PASSWORD = "app-secret-do-not-log-8d1f"
BOT_TENANT = "tenant-host"
ISSUER = "https://api.botframework.com"
KEY_ID = "pvebot-test-key"
ACCESS_TOKEN = "connector-access-token-5c2e"
GRAPH_ACCESS_TOKEN = "graph-access-token-77d1"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (msal insists on https for its authority)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "login.crt", directory / "login.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Recorded:
    method: str
    path: str
    body: dict[str, Any]
    authorization: str | None


@dataclass
class FakeBotFramework:
    """Start with :meth:`start`; activities carry ``service_url``; settings get ``openid_url`` and ``login_url``."""

    tmp: Path
    service_path: str = "/amer/"  # a serviceUrl with a path, as Teams' regional ones have
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    require_token: bool = True
    calls: list[Recorded] = field(default_factory=list)
    token_requests: int = 0
    # (tenant, scope) of every token issued
    tokens_issued: list[tuple[str, str]] = field(default_factory=list)
    # Microsoft Graph: users by AAD object id, their groups; graph_status answers every Graph call when set
    graph_users: dict[str, dict[str, Any]] = field(default_factory=dict)
    member_groups: dict[str, list[str]] = field(default_factory=dict)
    graph_status: int | None = None
    graph_delay: float = 0.0
    # the connector answers this many of the next edits (PUT) 429 with Retry-After
    throttle_edits: int = 0
    # the connector answers this many of the next posts 502, as an Azure front door does when Teams is down
    fail_posts: int = 0
    # when set, only posts into this conversation meet fail_posts (the requester's, not an approver's)
    fail_posts_in: str | None = None
    # Azure AD's token endpoint answers this status to every request while set (an outage of login.microsoftonline)
    token_status: int | None = None
    # AAD object ids who have the bot installed (a personal conversation can be created with them);
    # None: everyone
    installed_for: set[str] | None = None
    # every Create Conversation call (POST /v3/conversations)
    created: list[Recorded] = field(default_factory=list)
    # conversations the bot was removed from: a post there answers 403, as the connector does
    gone: set[str] = field(default_factory=set)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeBotFramework:
        self.cert, key = self_signed(self.tmp)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(key,), name="fake-bot-framework", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake Bot Framework did not start")
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # ---- what the tests read ----

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}{self.service_path}"

    @property
    def openid_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/openid/.well-known/openidconfiguration"

    @property
    def login_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def graph_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}/graph"

    @property
    def graph_scope(self) -> str:
        return f"https://127.0.0.1:{self.https_port}/.default"

    def graph_requests(self) -> list[Recorded]:
        with self._lock:
            return [c for c in self.calls if c.path.startswith("/graph/")]

    def activities(self, method: str | None = None) -> list[Recorded]:
        with self._lock:
            return [c for c in self.calls if c.path.startswith(self.service_path + "v3/")
                    and (method is None or c.method == method)]

    def wait_for(self, predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = predicate()
            if found:
                return found
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}; connector saw {[(c.method, c.path) for c in self.calls]}")

    def issue(self, *, audience: str = APP_ID, service_url: str | None = None, expires_in: int = 3600,
              key: Any = None, kid: str = KEY_ID, **claims: Any) -> str:
        """A token as the Bot Framework signs them for a bot (issuer, audience = app id, serviceurl claim)."""
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": audience, "iat": now - 10, "nbf": now - 10, "exp": now + expires_in,
                   "serviceurl": service_url or self.service_url, **claims}
        return jwt.encode(payload, key or _KEY, algorithm="RS256", headers={"kid": kid})

    # ---- the server ----

    def _serve(self, key: Path) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._main(key))
        finally:
            self._loop.close()

    async def _main(self, key: Path) -> None:
        self._stop = asyncio.Event()

        @web.middleware
        async def close_after(request: web.Request, handler: Any) -> web.StreamResponse:
            # no keep-alive: clients' pooled sockets would outlive this server and warn
            response = await handler(request)
            response.force_close()
            return response

        app = web.Application(middlewares=[close_after])
        app.router.add_get("/openid/.well-known/openidconfiguration", self._openid)
        app.router.add_get("/openid/keys", self._keys)
        app.router.add_get("/{tenant}/v2.0/.well-known/openid-configuration", self._aad_config)
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self._token)
        app.router.add_get("/graph/v1.0/users/{user}", self._graph_user)
        app.router.add_post("/graph/v1.0/users/{user}/getMemberGroups", self._graph_groups)
        app.router.add_post(self.service_path + "v3/conversations", self._create_conversation)
        app.router.add_route("*", self.service_path + "v3/conversations/{conversation}/{rest:.*}", self._connector)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        http = web.TCPSite(runner, "127.0.0.1", 0)
        await http.start()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, key)
        https = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await https.start()
        self.http_port = http._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.https_port = https._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _openid(self, request: web.Request) -> web.Response:
        return web.json_response({"issuer": ISSUER, "jwks_uri": f"http://127.0.0.1:{self.http_port}/openid/keys",
                                  "id_token_signing_alg_values_supported": ["RS256"]})

    async def _keys(self, request: web.Request) -> web.Response:
        jwk = RSAAlgorithm.to_jwk(_KEY.public_key(), as_dict=True)
        return web.json_response({"keys": [{**jwk, "kid": KEY_ID, "use": "sig", "endorsements": ["msteams"]}]})

    async def _aad_config(self, request: web.Request) -> web.Response:
        base = f"{self.login_url}/{request.match_info['tenant']}"
        return web.json_response({"issuer": f"{base}/v2.0", "token_endpoint": f"{base}/oauth2/v2.0/token",
                                  "authorization_endpoint": f"{base}/oauth2/v2.0/authorize"})

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if self.token_status is not None:
            # msal keeps a 5xx for as long as Retry-After says (5 s without it) before asking again
            return web.json_response({"error": "temporarily_unavailable"}, status=self.token_status,
                                     headers={"Retry-After": "1"})
        if form.get("client_id") != APP_ID or form.get("client_secret") != APP_PASSWORD:
            return web.json_response({"error": "invalid_client"}, status=401)
        self.token_requests += 1
        scope = str(form.get("scope", ""))
        self.tokens_issued.append((request.match_info["tenant"], scope))
        token = GRAPH_ACCESS_TOKEN if self.graph_scope in scope.split() else ACCESS_TOKEN
        return web.json_response({"token_type": "Bearer", "expires_in": 3600, "access_token": token})

    async def _graph(self, request: web.Request) -> web.Response | None:
        """Record a Graph call; an answer when it must fail (forced status, wrong token)."""
        body = await request.json() if request.can_read_body else {}
        auth = request.headers.get("Authorization")
        with self._lock:
            self.calls.append(Recorded(request.method, request.path_qs, body, auth))
        if self.graph_delay:
            await asyncio.sleep(self.graph_delay)
        if self.graph_status is not None:
            return web.json_response({"error": {"code": "ServiceUnavailable"}}, status=self.graph_status)
        if auth != f"Bearer {GRAPH_ACCESS_TOKEN}":
            return web.json_response({"error": {"code": "InvalidAuthenticationToken"}}, status=401)
        return None

    async def _graph_user(self, request: web.Request) -> web.Response:
        refused = await self._graph(request)
        if refused is not None:
            return refused
        user = self.graph_users.get(request.match_info["user"])
        if user is None:
            return web.json_response({"error": {"code": "Request_ResourceNotFound"}}, status=404)
        wanted = request.query.get("$select", "").split(",")
        return web.json_response({k: v for k, v in user.items() if k in wanted})

    async def _graph_groups(self, request: web.Request) -> web.Response:
        refused = await self._graph(request)
        if refused is not None:
            return refused
        user = request.match_info["user"]
        if user not in self.member_groups and user not in self.graph_users:
            return web.json_response({"error": {"code": "Request_ResourceNotFound"}}, status=404)
        return web.json_response({"value": self.member_groups.get(user, [])})

    async def _create_conversation(self, request: web.Request) -> web.Response:
        """``POST /v3/conversations`` (Create Conversation) as the Bot Connector REST API documents it.

        Takes ConversationParameters (``bot``, ``members``, ``isGroup``, ``tenantId``, ``channelData``) and
        answers a ConversationResourceResponse (``id``, ``serviceUrl``, ``activityId``). Teams creates a
        personal conversation with one member (AAD object id or 29: id) of the tenant, only when the bot
        is installed for them, and answers the same conversation id again for the same person.
        """
        body = await request.json() if request.can_read_body else {}
        auth = request.headers.get("Authorization")
        with self._lock:
            # kept apart from the activities, which the fake numbers act-1, act-2, … as it accepts them
            self.created.append(Recorded(request.method, request.path, body, auth))
        if self.require_token and auth != f"Bearer {ACCESS_TOKEN}":
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        members = body.get("members")
        tenant = body.get("tenantId") or ((body.get("channelData") or {}).get("tenant") or {}).get("id")
        if not isinstance(members, list) or len(members) != 1 or not isinstance(members[0], dict) \
                or not members[0].get("id") or not (body.get("bot") or {}).get("id"):
            return web.json_response({"error": {"code": "BadArgument", "message": "one member and the bot"}},
                                     status=400)
        if body.get("isGroup"):
            return web.json_response({"error": {"code": "BadArgument", "message": "group chats are not created"}},
                                     status=400)
        if not tenant:
            return web.json_response({"error": {"code": "BadArgument", "message": "tenant id required"}},
                                     status=400)
        user = str(members[0]["id"]).removeprefix("29:")
        if self.installed_for is not None and user not in self.installed_for:
            return web.json_response({"error": {"code": "Forbidden", "message": "bot not installed"}}, status=403)
        return web.json_response({"id": f"a:personal-{user}", "serviceUrl": self.service_url},
                                 status=201)

    def personal(self, user: str) -> list[Recorded]:
        """What the bot posted into its personal conversation with ``user`` (AAD object id)."""
        return [c for c in self.activities("POST") if f"/conversations/a:personal-{user}/activities" in c.path]

    async def _connector(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        auth = request.headers.get("Authorization")
        with self._lock:
            # a throttled call is refused before it is recorded: the record holds what Teams accepted
            throttled = request.method == "PUT" and self.throttle_edits > 0
            if throttled:
                self.throttle_edits -= 1
            else:
                self.calls.append(Recorded(request.method, request.path, body, auth))
        if throttled:
            return web.json_response({"error": {"code": "TooManyRequests"}}, status=429,
                                     headers={"Retry-After": "0.2"})
        with self._lock:
            failing = request.method == "POST" and self.fail_posts > 0 and (
                self.fail_posts_in is None or f"/conversations/{self.fail_posts_in}/" in request.path)
            if failing:
                self.fail_posts -= 1
        if failing:
            return web.Response(status=502, text="Bad Gateway")
        if self.require_token and auth != f"Bearer {ACCESS_TOKEN}":
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        rest = request.match_info["rest"]
        if request.method == "POST" and request.match_info["conversation"] in self.gone:
            return web.json_response({"error": {"code": "BotNotInConversationRoster",
                                                "message": "The bot is not part of the conversation roster."}},
                                     status=403)
        if request.method == "GET" and rest.startswith("members/"):
            member = self.members.get(rest.removeprefix("members/"))
            return web.json_response(member) if member else web.json_response({}, status=404)
        if request.method == "PUT":
            return web.json_response({"id": rest.removeprefix("activities/")})
        return web.json_response({"id": f"act-{next(self._ids)}"})


def message(fake: FakeBotFramework, text: str, *, user: str = "aad-bob", tenant: str = "tenant-acme",
            conversation: str = "a:1on1-bob", conversation_type: str = "personal", **extra: Any) -> dict[str, Any]:
    """A Teams message activity as the connector posts it to the bot."""
    return {
        "type": "message", "id": f"in-{uuid.uuid4().hex[:10]}", "timestamp": "2026-11-21T09:00:00.000Z",
        "serviceUrl": fake.service_url, "channelId": "msteams",
        "from": {"id": f"29:{user}", "name": user, "aadObjectId": user},
        "conversation": {"id": conversation, "conversationType": conversation_type, "tenantId": tenant},
        "recipient": {"id": f"28:{APP_ID}", "name": "pvebot"},
        "text": text, "textFormat": "plain", "channelData": {"tenant": {"id": tenant}}, **extra,
    }


def card_action(fake: FakeBotFramework, data: dict[str, Any], *, verb: str, reply_to: str,
                user: str = "aad-alice", **kw: Any) -> dict[str, Any]:
    """The ``adaptiveCard/action`` invoke a Universal Action (Action.Execute) press sends."""
    activity = message(fake, "", user=user, **kw)
    activity.pop("text")
    activity.update(type="invoke", name="adaptiveCard/action", replyToId=reply_to,
                    value={"action": {"type": "Action.Execute", "verb": verb, "data": data}, "trigger": "manual"})
    return activity


def cards_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [a["content"] for a in body.get("attachments") or []
            if a.get("contentType") == "application/vnd.microsoft.card.adaptive"]


def card_text(card: dict[str, Any]) -> str:
    """Every string in a card, for loose assertions."""
    return json.dumps(card, ensure_ascii=False)


_SCHEMA = Path(__file__).parent / "schemas" / "adaptive-card-1.5.0.json"
_validator: Any = None


def validate_card(card: dict[str, Any]) -> None:
    """Check a card against the Adaptive Card 1.5 schema, plus what the schema does not check for Teams."""
    global _validator
    import jsonschema

    if _validator is None:
        schema = json.loads(_SCHEMA.read_text(encoding="utf-8"))
        jsonschema.Draft6Validator.check_schema(schema)
        _validator = jsonschema.Draft6Validator(schema, format_checker=jsonschema.Draft6Validator.FORMAT_CHECKER)
    bare = {k: v for k, v in card.items() if k != "msteams"}  # Teams-only, unknown to the schema
    errors = sorted(_validator.iter_errors(bare), key=lambda e: list(e.absolute_path))
    assert not errors, "; ".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in errors[:5])
    if "Action.Execute" in json.dumps(card):
        assert card["version"] == "1.5", "Teams needs version 1.5 for Universal Actions"


# ---- a pvebot with Teams switched on, served on loopback ----------------------------------------------------


@dataclass
class TeamsBot:
    """The bot's HTTP face on loopback, the app behind it, and the fake Bot Framework it talks to."""

    fake: FakeBotFramework
    app: Any
    url: str
    hypervisors: Any

    async def post(self, activity: dict[str, Any], *, token: str | None = "valid",
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        import aiohttp

        sent = {"Content-Type": "application/json", **(headers or {})}
        if token == "valid":
            token = self.fake.issue(service_url=activity.get("serviceUrl"))
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        async with aiohttp.ClientSession() as session, session.post(
                self.url, data=json.dumps(activity), headers=sent) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text) if text else None
            except ValueError:
                return response.status, text


def teams_settings(storage: Any, fake: FakeBotFramework, **extra: str) -> Any:
    from bot.config import Settings

    return Settings.from_mapping({
        **dict(storage.settings.env), "PVEBOT_JOB_TIMEOUT": "60",
        "MICROSOFT_APP_ID": APP_ID, "MICROSOFT_APP_PASSWORD": APP_PASSWORD, "MICROSOFT_APP_TENANT_ID": BOT_TENANT,
        "PVEBOT_TEAMS_OPENID_METADATA_URL": fake.openid_url, "PVEBOT_TEAMS_LOGIN_URL": fake.login_url,
        "PVEBOT_GRAPH_URL": fake.graph_url, **extra,
    })


def standard_hypervisors() -> Any:
    from tests.fakes import FakeHypervisors

    hypervisors = FakeHypervisors()
    lab = hypervisors.cluster("lab")
    lab.add(101, "web-01", pool="acme")
    lab.add(102, "db-01", pool="acme", status="stopped")
    lab.add(201, "gx-01", pool="globex")
    return hypervisors


@contextlib.asynccontextmanager
async def running_bot(tmp_path: Path, monkeypatch: Any, *, auth: bool = True, progress_interval: float = 0.0,
                      doc: str | None = None, env: dict[str, str] | None = None) -> AsyncIterator[TeamsBot]:
    """Fake Bot Framework + provisioned pvebot (embedded RQ queue, fake hypervisors) + ``create_app`` on loopback.

    ``env`` adds settings (``PVEBOT_RATE_LIMIT=3``, …).
    """
    from aiohttp.test_utils import TestServer

    from adapters.queue import EmbeddedQueue
    from bot.bootstrap import build_app, build_server
    from tests.support import make_storage, provision

    fake = FakeBotFramework(tmp_path).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.cert))  # msal's https to the fake Azure AD
    fake.require_token = auth
    storage = make_storage(f"sqlite:///{tmp_path / 'pvebot.db'}")
    if doc is None:
        provision(storage)
    else:
        provision(storage, doc)
    extra = {**({} if auth else {"MICROSOFT_APP_ID": "", "PVEBOT_TEAMS_EMULATOR": "1"}), **(env or {})}
    hypervisors = standard_hypervisors()
    app = build_app(teams_settings(storage, fake, **extra), storage=storage, hypervisors=hypervisors,
                    queue=EmbeddedQueue(workers=1), progress_interval=progress_interval, poll_interval=0.01)
    server = TestServer(build_server(app), host="127.0.0.1")
    await server.start_server()
    try:
        yield TeamsBot(fake=fake, app=app, url=str(server.make_url("/api/messages")), hypervisors=hypervisors)
    finally:
        await server.close()
        app.close()
        fake.stop()
        storage.engine.dispose()
