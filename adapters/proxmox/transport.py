"""How pvebot reaches one cluster: proxmoxer over HTTPS with an API token, TLS as configured,
timeouts on every call, failover across API URLs and retries for reads only.

The HTTP itself is one urllib3 connection pool per API URL, handed to proxmoxer as its session:
requests' session machinery (cookies, proxies, environment, hooks, redirects) has nothing to do
for a token-authenticated JSON API and cost a `vm status` more CPU than the rest of the bot.

TLS modes:
- CA file: verify the chain against that file (Proxmox's ``pve-root-ca.pem`` or a real CA).
- Fingerprint: like Proxmox's own tools, trust exactly the node certificate whose SHA-256 is
  pinned. urllib3 checks the pin right after the handshake, before any request (and so before
  the token) is written.
- Insecure: no verification, logged loudly each time a connection is set up.

Failover: a connection that was never made (refused, unresolvable, connect timeout) moves on to
the next URL for every method, since nothing reached Proxmox. A read timeout or dropped
connection is retried (on the next URL) for GETs only; a POST might have started a task.
TLS failures are not failed over: a certificate mismatch is a reason to stop, not to look elsewhere.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from proxmoxer import ProxmoxResource, ResourceException
from proxmoxer.backends.https import JsonSerializer
from urllib3 import HTTPSConnectionPool, Timeout
from urllib3.exceptions import HTTPError, ReadTimeoutError, SSLError

from adapters.proxmox.errors import Redactor, from_resource_error, from_transport_error, not_sent
from adapters.proxmox.mapping import split_token_id
from core.errors import ConfigurationError, ExternalSystemError
from core.model import TlsMode
from core.telemetry import NullTelemetry, Telemetry

log = logging.getLogger(__name__)

_PATH_SAFE = "/:@!$&'()*+,;=~%"  # what may stay as it is in a path (as requests re-quotes a URL)


class _Body(bytes):
    """An answer's body; its repr is its size. proxmoxer formats ``repr(content)`` into a debug line
    on every call, logged or not: for a 20,000-guest inventory that was a fifth of the fetch's CPU."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


@dataclass(frozen=True)
class _Answer:
    """The part of an HTTP response proxmoxer reads."""

    status_code: int
    reason: str
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class _PoolSession:
    """proxmoxer's session, over one urllib3 pool: ``request(method, url, data=, params=)``.

    urllib3 raises its own errors as they are (no retries here: :class:`ClusterTransport` decides).
    """

    def __init__(self, pool: HTTPSConnectionPool, *, origin: str, authorization: str) -> None:
        self._pool = pool
        self._origin = origin
        base = {"Authorization": authorization, "Accept": "application/json", "Accept-Encoding": "gzip"}
        self._headers = base
        self._form_headers = {**base, "Content-Type": "application/x-www-form-urlencoded"}

    def request(self, method: str, url: str, data: dict[str, Any] | None = None,
                params: dict[str, Any] | None = None) -> _Answer:
        target = quote(url.removeprefix(self._origin), safe=_PATH_SAFE)  # proxmoxer's URLs are under our base URL
        if params:
            target += "?" + urlencode(params, doseq=True)
        body = urlencode(data, doseq=True) if data else None
        answer = self._pool.urlopen(method, target, body=body, headers=self._form_headers if body else self._headers,
                                    retries=False, redirect=False)
        return _Answer(answer.status, answer.reason or "", _Body(answer.data))

    def close(self) -> None:
        self._pool.close()


def normalize_fingerprint(value: str | None, *, cluster: str) -> str:
    """``AB:CD:..`` (as ``pvenode cert info`` prints it) -> 64 lower-case hex digits."""
    digits = (value or "").replace(":", "").strip().lower()
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits):
        raise ConfigurationError(f"cluster {cluster}: the TLS fingerprint must be a SHA-256 like AB:CD:... (32 bytes)")
    return digits


class ClusterTransport:
    """Calls the PVE API of one cluster; every failure comes out as a core error."""

    def __init__(
        self, *, cluster: str, urls: list[str], token_id: str, secret: str, tls_mode: TlsMode,
        tls_value: str | None, timeout: float = 10.0, read_retries: int = 2, retry_backoff: float = 0.2,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not urls:
            raise ConfigurationError(f"cluster {cluster}: no API URL configured")
        self.cluster = cluster
        self.timeout = timeout
        self._telemetry: Telemetry = telemetry or NullTelemetry()
        self._read_retries = read_retries
        self._backoff = retry_backoff
        self._user, self._token_name = split_token_id(token_id, cluster=cluster)
        self._secret = secret
        self._tls_mode = TlsMode(tls_mode)
        self._tls_value = tls_value
        self._fingerprint = (
            normalize_fingerprint(tls_value, cluster=cluster) if self._tls_mode is TlsMode.FINGERPRINT else None
        )
        if self._tls_mode is TlsMode.CA_FILE and not tls_value:
            raise ConfigurationError(f"cluster {cluster}: TLS mode ca_file needs the CA file path")
        if self._tls_mode is TlsMode.INSECURE:
            log.warning(
                "TLS VERIFICATION IS OFF for cluster %s: anyone on the network path can read its API token. "
                "Pin the node certificate's fingerprint or give a CA file.", cluster,
            )
        self._urls = list(urls)
        self.redact = Redactor(secret=secret, hosts=[urlsplit(u).hostname or "" for u in urls])
        self._sessions: list[_PoolSession] = []
        self._apis = [self._connect(url) for url in urls]
        self._preferred = 0
        self._lock = threading.Lock()

    def _connect(self, url: str) -> ProxmoxResource:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        hostname = parts.hostname or ""
        port = parts.port or 8006
        host = f"[{hostname}]" if ":" in hostname else hostname
        prefix = parts.path.strip("/")
        tls: dict[str, Any] = {"cert_reqs": "CERT_NONE"}
        if self._fingerprint:
            tls["assert_fingerprint"] = self._fingerprint
        elif self._tls_mode is TlsMode.CA_FILE:
            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": self._tls_value}
        # as many kept-alive connections as requests kept (10), so that threads do not queue for one
        pool = HTTPSConnectionPool(hostname, port, maxsize=10, block=False, retries=False,
                                   timeout=Timeout(connect=self.timeout, read=self.timeout), **tls)
        origin = f"https://{host}:{port}"
        session = _PoolSession(pool, origin=origin,
                               authorization=f"PVEAPIToken={self._user}!{self._token_name}={self._secret}")
        self._sessions.append(session)
        base_url = f"{origin}/{prefix}/api2/json" if prefix else f"{origin}/api2/json"
        return ProxmoxResource(base_url=base_url, session=session, serializer=JsonSerializer())

    def close(self) -> None:
        for session in self._sessions:
            session.close()

    def call(self, method: str, path: str, /, **params: Any) -> Any:
        """``method`` (GET, POST, PUT, DELETE) on ``path`` (e.g. ``/cluster/resources``) -> Proxmox's ``data``.

        Python booleans become 0/1: PVE refuses ``True``/``true`` for boolean parameters.
        """
        clean = {k: (int(v) if isinstance(v, bool) else v) for k, v in params.items() if v is not None}
        idempotent = method == "GET"
        with self._lock:
            start = self._preferred
        order = [(start + i) % len(self._apis) for i in range(len(self._apis))]
        retries = self._read_retries if idempotent else 0
        last: HTTPError | None = None
        while order:
            index = order[0]
            try:
                result = self._send(index, method, path, clean)
            except ResourceException as e:
                log.info("cluster %s: %s %s -> %s %s", self.cluster, method, path, e.status_code,
                         self.redact(str(e.content or ""), keep_ips=True))
                raise from_resource_error(e, cluster=self.cluster, redact=self.redact) from e
            except SSLError as e:
                log.error("cluster %s: TLS failure on API URL #%d: %s", self.cluster, index + 1, e)
                raise from_transport_error(e, cluster=self.cluster, timeout=self.timeout, idempotent=idempotent) from e
            except HTTPError as e:
                last = e
                if not_sent(e):
                    log.warning("cluster %s: API URL #%d unreachable, failing over: %s", self.cluster, index + 1, e)
                    order.pop(0)
                    continue
                if retries <= 0:
                    raise from_transport_error(
                        e, cluster=self.cluster, timeout=self.timeout, idempotent=idempotent
                    ) from e
                retries -= 1
                log.warning("cluster %s: %s %s failed (%s); retrying", self.cluster, method, path, type(e).__name__)
                order.append(order.pop(0))
                time.sleep(self._backoff)
                continue
            with self._lock:
                self._preferred = index
            return result
        assert last is not None
        raise from_transport_error(last, cluster=self.cluster, timeout=self.timeout, idempotent=idempotent) from last

    def _send(self, index: int, method: str, path: str, params: dict[str, Any]) -> Any:
        """One HTTP attempt, measured: failovers and retries each count as a call."""
        started = time.monotonic()
        outcome = "ok"
        try:
            return self._send_once(index, method, path, params)
        except ResourceException as e:
            outcome = f"http_{e.status_code}"
            raise
        except SSLError:
            outcome = "tls"
            raise
        except HTTPError as e:
            outcome = "unreachable" if not_sent(e) else "timeout" if isinstance(e, ReadTimeoutError) else "dropped"
            raise
        finally:
            self._telemetry.proxmox_call(cluster=self.cluster, outcome=outcome, seconds=time.monotonic() - started)

    def _send_once(self, index: int, method: str, path: str, params: dict[str, Any]) -> Any:
        resource = self._apis[index](path.strip("/"))
        if method == "GET":
            return resource.get(**params)
        if method == "POST":
            return resource.post(**params)
        if method == "PUT":
            return resource.put(**params)
        if method == "DELETE":
            return resource.delete(**params)
        raise ExternalSystemError(f"cluster {self.cluster}: unsupported HTTP method")
