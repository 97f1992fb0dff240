"""How pvebot reaches one cluster: proxmoxer over HTTPS with an API token, TLS as configured,
timeouts on every call, failover across API URLs and retries for reads only.

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
from typing import Any
from urllib.parse import urlsplit

import requests
from proxmoxer import ProxmoxResource, ResourceException
from proxmoxer.backends import https
from requests.adapters import HTTPAdapter

from adapters.proxmox.errors import Redactor, from_resource_error, from_transport_error, not_sent
from adapters.proxmox.mapping import split_token_id
from core.errors import ConfigurationError, ExternalSystemError
from core.model import TlsMode
from core.telemetry import NullTelemetry, Telemetry

log = logging.getLogger(__name__)


class FingerprintAdapter(HTTPAdapter):
    """Pins the peer certificate's SHA-256; urllib3 checks it before sending anything."""

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint
        super().__init__(max_retries=0)

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs["assert_fingerprint"] = self._fingerprint
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


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
        self._sessions: list[requests.Session] = []
        self._apis = [self._connect(url) for url in urls]
        self._preferred = 0
        self._lock = threading.Lock()

    def _connect(self, url: str) -> ProxmoxResource:
        parts = urlsplit(url if "://" in url else f"https://{url}")
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        prefix = parts.path.strip("/") or None
        verify: bool | str = (self._tls_value or False) if self._tls_mode is TlsMode.CA_FILE else False
        # Built like ProxmoxAPI builds itself, so that we can pin on the session it uses.
        backend = https.Backend(
            host=host, port=parts.port or 8006, user=self._user, token_name=self._token_name,
            token_value=self._secret, verify_ssl=verify, timeout=self.timeout, path_prefix=prefix, service="PVE",
        )
        session = backend.get_session()
        # REQUESTS_CA_BUNDLE and proxy variables must not change what we verify or where we connect
        session.trust_env = False
        if self._fingerprint:
            session.mount("https://", FingerprintAdapter(self._fingerprint))
        self._sessions.append(session)
        return ProxmoxResource(base_url=backend.get_base_url(), session=session, serializer=backend.get_serializer())

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
        last: requests.RequestException | None = None
        while order:
            index = order[0]
            try:
                result = self._send(index, method, path, clean)
            except ResourceException as e:
                log.info("cluster %s: %s %s -> %s %s", self.cluster, method, path, e.status_code,
                         self.redact(str(e.content or ""), keep_ips=True))
                raise from_resource_error(e, cluster=self.cluster, redact=self.redact) from e
            except requests.exceptions.SSLError as e:
                log.error("cluster %s: TLS failure on API URL #%d: %s", self.cluster, index + 1, e)
                raise from_transport_error(e, cluster=self.cluster, timeout=self.timeout, idempotent=idempotent) from e
            except requests.RequestException as e:
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
        except requests.exceptions.SSLError:
            outcome = "tls"
            raise
        except requests.RequestException as e:
            outcome = "unreachable" if not_sent(e) else "timeout" if isinstance(e, requests.Timeout) else "dropped"
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
