"""What ``pvebot doctor`` asks of each cluster: every API URL alone, its certificate pin, the token,
and the token's effective privileges (``GET /access/permissions``).

Each URL gets its own transport with no failover and no retries, so that a dead second node is
reported even while the first answers; the reasons come from the exception the transport chains
(``raise … from e``), not from message text.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from proxmoxer import ResourceException
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError, SSLError

from adapters.proxmox.transport import ClusterTransport
from core.errors import BotError
from core.model import Cluster, TlsMode
from core.ports import SecretCipher
from core.services.doctor import Check, Status, assess_privileges, privilege_paths


def _classify(cluster: Cluster, index: int, url: str, error: BotError) -> Check:
    name = f"cluster {cluster.name}: API URL #{index + 1} ({urlsplit(url).netloc or url})"
    cause = error.__cause__
    if isinstance(cause, SSLError):
        if cluster.tls_mode is TlsMode.FINGERPRINT:
            return Check(name, Status.FAIL, "the node's certificate does not match the pinned SHA-256 fingerprint",
                         "read it on the node with 'pvenode cert info' and set clusters[].tls.fingerprint, then "
                         "'pvebot admin apply'")
        return Check(name, Status.FAIL, "the node's certificate is not trusted by the configured CA file",
                     "point clusters[].tls.ca_file at the cluster's pve-root-ca.pem")
    if isinstance(cause, ResourceException) and int(cause.status_code) == 401:
        return Check(name, Status.FAIL, "Proxmox refused the API token (401)",
                     "check clusters[].token_id and the secret in its token_secret_env variable")
    # refused and unresolvable are kinds of urllib3's connect timeout: they are asked first
    if isinstance(cause, (ReadTimeoutError, ConnectTimeoutError)) and not isinstance(cause, NewConnectionError):
        return Check(name, Status.FAIL, "Proxmox did not answer in time", "is pveproxy running on that node?")
    if isinstance(cause, HTTPError):
        return Check(name, Status.FAIL, "no connection (refused, unresolvable or unreachable)",
                     "check the URL, that the node is up and that port 8006 is open to pvebot")
    return Check(name, Status.FAIL, error.user_message, "see the log of this run for the details")


def probe_cluster(
    cluster: Cluster, *, cipher: SecretCipher, pools: Sequence[str], timeout: float = 5.0
) -> list[Check]:
    """Probe ``cluster``: one line per API URL, then the features its token's privileges allow.

    Args:
        cluster: as provisioned.
        cipher: decrypts the stored token secret.
        pools: the pools companies are bound to on this cluster.
        timeout: seconds per call.

    Returns:
        The checks, in the order an operator would fix them.
    """
    try:
        secret = cipher.decrypt(cluster.token_secret_encrypted)
    except Exception:
        return [Check(f"cluster {cluster.name}: token", Status.FAIL, "the stored token secret cannot be decrypted",
                      "PVEBOT_SECRET_KEY is not the key it was stored with; re-apply the provisioning file")]
    checks: list[Check] = []
    working: ClusterTransport | None = None
    transports: list[ClusterTransport] = []
    try:
        for index, url in enumerate(cluster.api_urls):
            try:
                transport = ClusterTransport(
                    cluster=cluster.name, urls=[url], token_id=cluster.token_id, secret=secret,
                    tls_mode=TlsMode(cluster.tls_mode), tls_value=cluster.tls_value, timeout=timeout,
                    read_retries=0,
                )
            except BotError as e:
                checks.append(Check(f"cluster {cluster.name}: configuration", Status.FAIL, e.user_message,
                                    "correct the cluster in the provisioning file"))
                return checks
            transports.append(transport)
            name = f"cluster {cluster.name}: API URL #{index + 1} ({urlsplit(url).netloc or url})"
            try:
                version = transport.call("GET", "/version")
            except BotError as e:
                checks.append(_classify(cluster, index, url, e))
                continue
            pin = "pinned certificate matches" if cluster.tls_mode is TlsMode.FINGERPRINT else (
                "certificate trusted by the CA file" if cluster.tls_mode is TlsMode.CA_FILE else "TLS NOT VERIFIED")
            status = Status.WARN if cluster.tls_mode is TlsMode.INSECURE else Status.OK
            checks.append(Check(name, status, f"Proxmox VE {version.get('version', '?')}, {pin}, token accepted",
                                "pin the node certificate's fingerprint (clusters[].tls.fingerprint)"))
            working = working or transport
        if working is None:
            return checks
        granted: dict[str, frozenset[str]] = {}
        try:
            for path in privilege_paths(pools):
                answer = working.call("GET", "/access/permissions", path=path)
                granted[path] = frozenset(name for name in (answer or {}).get(path, {}))
        except BotError as e:
            checks.append(Check(f"cluster {cluster.name}: privileges", Status.WARN,
                                f"could not read the token's permissions ({e.user_message})",
                                "Proxmox VE 6.2 or later answers GET /access/permissions for any token"))
            return checks
        checks.extend(assess_privileges(cluster=cluster.name, pools=pools, granted=granted))
        return checks
    finally:
        for transport in transports:
            transport.close()
