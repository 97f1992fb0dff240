"""The simulator's HTTP side: pveproxy's answers over HTTPS, served from a background thread.

One request goes: record it, apply armed faults, find the endpoint in the schema (else 501),
check the API token (else 401, empty body), validate parameters (else 400 with ``errors``),
check privileges (else 403), then run the endpoint. Errors carry their message in the HTTP
reason phrase, as pveproxy sends them, and ``{"data": null}`` as body.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import unquote

from aiohttp import web

from pvesim import api_backup, api_cluster, api_guests, api_network, api_notify, api_updates  # noqa: F401,E501  (registers the routes)
from pvesim.context import ROUTES, Call, Listing, SimContext
from pvesim.faults import Faults
from pvesim.schema import SchemaIndex
from pvesim.state import ApiError
from pvesim.tls import SimCertificates

API_PREFIX = "/api2/json"


class RecordedRequest(NamedTuple):
    method: str
    path: str
    had_auth_header: bool


@dataclass
class ApiSettings:
    auth_failure_delay: float = 0.0


class ApiApp:
    """The request pipeline; ``port_nodes`` maps a node's own listener port to its name."""

    def __init__(self, ctx: SimContext, *, faults: Faults, settings: ApiSettings) -> None:
        self.ctx = ctx
        self.faults = faults
        self.settings = settings
        self.schema = SchemaIndex()
        self.requests: list[RecordedRequest] = []
        self.port_nodes: dict[int, str] = {}

    def build(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        state = self.ctx.state
        with state.lock:
            self.requests.append(RecordedRequest(request.method, request.path, "Authorization" in request.headers))
        if self.faults.take_drop() or self._node_is_down(request):
            return _drop(request)
        delay = self.faults.take_delay()
        if delay:
            await asyncio.sleep(delay)
        try:
            data = await self._dispatch(request)
        except ApiError as e:
            return _error(e)
        body: dict[str, Any]
        if isinstance(data, Listing):
            body = {"data": data.data, "total": data.total}
        else:
            body = {"data": data}
        return web.Response(body=json.dumps(body).encode(), content_type="application/json", charset="UTF-8")

    def _node_is_down(self, request: web.Request) -> bool:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        node = self.port_nodes.get(sockname[1]) if sockname else None
        if node is None:
            return False
        with self.ctx.state.lock:
            return not self.ctx.state.nodes[node].online

    async def _dispatch(self, request: web.Request) -> Any:
        if not request.path.startswith(API_PREFIX + "/"):
            raise ApiError(501, f"Method '{request.method} {request.path}' not implemented")
        # match on the raw path: a volume id travels as one %-encoded segment ("local%3Abackup%2Fvzdump-...")
        api_path = request.raw_path.split("?", 1)[0][len(API_PREFIX) :]
        endpoint, path_params = self.schema.match(request.method, api_path)
        path_params = {k: unquote(v) for k, v in path_params.items()}
        user, privileges = await self._authenticate(request)
        params = dict(request.query)
        lists: dict[str, list[str]] = {}
        if request.method in ("POST", "PUT") and request.can_read_body:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
            # an array parameter arrives as the same form field repeated (what requests sends for a list)
            for name in {k for k in form if self.schema.is_array(endpoint, k)}:
                lists[name] = [v for v in form.getall(name) if isinstance(v, str)]
                params[name] = lists[name][0]
        self.schema.validate(endpoint, {**params, **path_params}, lists=lists)
        self.schema.check_privileges(endpoint, path_params=path_params, params=params, privileges=privileges)
        message = self.faults.take_500(api_path)
        if message is not None:
            raise ApiError(500, message)
        call = Call(method=request.method, path=endpoint.path, path_params=path_params, params=params, user=user,
                    privileges=privileges, lists=lists)
        return await ROUTES[(endpoint.method, endpoint.path)](self.ctx, call)

    async def _authenticate(self, request: web.Request) -> tuple[str, frozenset[str] | None]:
        header = request.headers.get("Authorization", "")
        token_id, _, secret = header.removeprefix("PVEAPIToken=").partition("=")
        with self.ctx.state.lock:
            known = self.ctx.state.tokens.get(token_id) if header.startswith("PVEAPIToken=") else None
        if known is None or not hmac.compare_digest(known[0].encode(), secret.encode()):
            # pveproxy answers a bad token only after a pause, to slow down guessing
            await asyncio.sleep(self.settings.auth_failure_delay)
            raise ApiError(401, "authentication failure" if header else "No ticket")
        return token_id, known[1]


def _error(e: ApiError) -> web.Response:
    reason = e.message.replace("\n", " ").strip()
    if e.status == 401:
        return web.Response(status=401, reason=reason)
    body: dict[str, Any] = {"data": None}
    if e.errors:
        body["errors"] = e.errors
    return web.Response(status=e.status, reason=reason, body=json.dumps(body).encode(),
                        content_type="application/json", charset="UTF-8")


def _drop(request: web.Request) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.abort()
    # nothing reaches the client; aiohttp discards the answer on the closed transport
    return web.Response(status=204)


class SimServer:
    """The simulator served on 127.0.0.1 from its own thread and event loop.

    ``url`` is the cluster's main listener; :meth:`node_url` gives a listener that belongs to
    one node and refuses connections while that node is offline, for failover tests.
    """

    def __init__(self, api: ApiApp, certs: SimCertificates, *, port: int = 0, on_stop: Callable[[], None]) -> None:
        self._api = api
        self._certs = certs
        self._on_stop = on_stop
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(certs.cert_file, certs.key_file)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pve-simulator", daemon=True)
        self._thread.start()
        self._runner = web.AppRunner(api.build(), access_log=None, handle_signals=False, shutdown_timeout=0.5)
        self._node_sites: dict[str, tuple[int, web.SockSite | None]] = {}
        self._stopped = False
        self._call(self._runner.setup())
        self.port, _ = self._call(self._listen(port))
        self.url = f"https://127.0.0.1:{self.port}"
        self.fingerprint = certs.fingerprint
        self.ca_file = str(certs.ca_file)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _listen(self, port: int) -> tuple[int, web.SockSite]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        site = web.SockSite(self._runner, sock, ssl_context=self._ssl)
        await site.start()
        return sock.getsockname()[1], site

    def node_url(self, node: str) -> str:
        """A URL served as if by ``node`` itself; it refuses connections while the node is offline."""
        if node not in self._node_sites:
            port, site = self._call(self._listen(0))
            self._api.port_nodes[port] = node
            self._node_sites[node] = (port, site)
            with self._api.ctx.state.lock:
                online = self._api.ctx.state.nodes[node].online
            if not online:
                self.set_node_online(node, False)
        return f"https://127.0.0.1:{self._node_sites[node][0]}"

    def set_node_online(self, node: str, online: bool) -> None:
        if node not in self._node_sites or self._stopped:
            return
        port, site = self._node_sites[node]
        if online and site is None:
            _, site = self._call(self._listen(port))
        elif not online and site is not None:
            self._call(site.stop())
            site = None
        self._node_sites[node] = (port, site)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._on_stop()

    async def _shutdown(self) -> None:
        # Abort open (keep-alive) connections first: a graceful TLS close could outlive the loop
        # and leave sockets for the garbage collector to complain about.
        if self._runner.server is not None:
            for handler in self._runner.server.connections:
                if handler.transport is not None:
                    handler.transport.abort()
        await self._runner.cleanup()
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for _ in range(3):  # let the aborted transports run connection_lost and close their sockets
            await asyncio.sleep(0)

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
