"""Proxmox and transport failures turned into core errors with messages safe for any chat.

Messages name the cluster by its pvebot name, never by host or address, and never carry the
token secret. Proxmox's own message (which pveproxy puts in the HTTP reason phrase) is kept
where it helps, after removing the cluster's host names and addresses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from proxmoxer import ResourceException
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ReadTimeoutError, SSLError

from core.errors import BotError, Conflict, ExternalSystemError, InvalidArguments, NotFound, PermissionDenied

_IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b")
_MAX = 200


class Redactor:
    """Removes what must not reach a chat: the secret, the API hosts and any IPv4 address."""

    def __init__(self, *, secret: str, hosts: Iterable[str]) -> None:
        self._secret = secret
        self._hosts = sorted({h for h in hosts if h}, key=len, reverse=True)

    def __call__(self, text: str, *, keep_ips: bool = False) -> str:
        if self._secret:
            text = text.replace(self._secret, "***")
        for host in self._hosts:
            text = text.replace(host, "<host>")
        if not keep_ips:
            text = _IPV4.sub("<address>", text)
        text = " ".join(text.split())
        return text if len(text) <= _MAX else text[: _MAX - 1] + "…"


def from_resource_error(e: ResourceException, *, cluster: str, redact: Redactor) -> BotError:
    """An HTTP answer >= 400 from Proxmox."""
    status = int(e.status_code)
    message = redact(str(e.content or ""))
    if status == 400:
        return InvalidArguments(f"cluster {cluster}: Proxmox refused the request: {_param_errors(e, redact)}")
    if status == 401:
        return ExternalSystemError(
            f"cluster {cluster}: Proxmox refused the API token (401); check the token id and secret"
        )
    if status == 403:
        m = re.search(r"\(([^,()]*),\s*([^()]+)\)", message)
        if m:
            return PermissionDenied(
                f"cluster {cluster}: the API token lacks the Proxmox privilege {m.group(2).strip()} "
                f"on {m.group(1).strip()}"
            )
        return PermissionDenied(f"cluster {cluster}: the API token lacks a Proxmox privilege ({message})")
    if status == 501:
        return ExternalSystemError(f"cluster {cluster}: this Proxmox version does not offer that call ({message})")
    if status in (595, 596):
        return ExternalSystemError(f"cluster {cluster}: a node did not answer ({message}); is it offline?")
    return _from_message(message, cluster=cluster)


def _param_errors(e: ResourceException, redact: Redactor) -> str:
    errors = e.errors if isinstance(e.errors, dict) else {}
    parts = [f"{k}: {v}" for k, v in errors.items() if isinstance(v, str)]
    return redact("; ".join(parts) or str(e.content or "invalid parameters"), keep_ips=True)


# (pattern, error class, message template using the match's groups); first match wins.
_KNOWN: tuple[tuple[re.Pattern[str], type[BotError], str], ...] = (
    (re.compile(r"Configuration file 'nodes/([^/]+)/(?:qemu-server|lxc)/(\d+)\.conf' does not exist"), NotFound,
     "guest {1} was not found on node {0}"),
    (re.compile(r"hostname lookup '([^']+)' failed"), NotFound, "node {0} is not part of the cluster"),
    (re.compile(r"snapshot '([^']+)' does not exist"), NotFound, "snapshot '{0}' does not exist"),
    (re.compile(r"storage '([^']+)' does not exist"), NotFound, "storage '{0}' does not exist on that node"),
    (re.compile(r"pool '([^']+)' does not exist"), NotFound, "pool '{0}' does not exist"),
    (re.compile(r"volume '([^']+)' does not exist"), NotFound, "backup '{0}' does not exist"),
    (re.compile(r"cannot remove protected (?:volume|archive) '([^']+)'"), Conflict,
     "backup '{0}' is protected; unprotect it first"),
    (re.compile(r"(?:J|j)ob '([^']+)' does not exist|no such vzdump job '([^']+)'"), NotFound,
     "that backup schedule does not exist in Proxmox"),
    (re.compile(r"Job '([^']+)' already exists"), Conflict, "a backup job '{0}' exists already"),
    (re.compile(r"can't overwrite running container"), Conflict,
     "the container is running; stop it before restoring over it"),
    (re.compile(r"error during cfs-locked 'file-jobs_cfg' operation: (.+)"), ExternalSystemError,
     "Proxmox refused the backup job: {0}"),
    (re.compile(r"no such task"), NotFound, "that task is unknown (finished long ago, or another node's)"),
    (re.compile(r"(?:VM|CT) (\d+) is locked \(([^)]+)\)"), Conflict,
     "guest {0} is locked ({1}); wait for that operation to finish"),
    (re.compile(r"can't lock file '[^']*?(\d+)[^']*' - got timeout"), Conflict,
     "guest {0} is busy with another task; try again when it has finished"),
    (re.compile(r"(?:VM|CT) (\d+) is running - destroy failed"), Conflict,
     "guest {0} is running; stop it before deleting it"),
    (re.compile(r"unable to restore (?:VM|CT) (\d+) - (?:VM|CT) is running"), Conflict,
     "guest {0} is running; stop it before restoring over it"),
    (re.compile(r"unable to restore (?:VM|CT) (\d+) - (?:VM|CT) \d+ already exists on node '([^']+)'"), Conflict,
     "guest {0} already exists (on node {1}); restore over it with force, on its node"),
    (re.compile(r"(?:VM|CT) (\d+).*already exists|config file already exists"), Conflict, "that VMID is already used"),
    (re.compile(r"(?:VM|CT) (\d+) already running"), Conflict, "guest {0} is already running"),
    (re.compile(r"snapshot name '([^']+)' already used"), Conflict, "snapshot '{0}' already exists"),
    (re.compile(r"detected modified configuration"), Conflict,
     "the guest's configuration changed meanwhile; try again"),
    (re.compile(r"shrinking disks is not supported"), InvalidArguments, "disks can only grow, not shrink"),
)


def _from_message(message: str, *, cluster: str) -> BotError:
    for pattern, error, template in _KNOWN:
        m = pattern.search(message)
        if m:
            return error(f"cluster {cluster}: " + template.format(*m.groups()))
    return ExternalSystemError(f"cluster {cluster}: Proxmox says: {message or 'internal error'}")


def from_transport_error(e: HTTPError, *, cluster: str, timeout: float, idempotent: bool) -> BotError:
    """Connection, TLS and timeout failures (after failover and retries are spent)."""
    if isinstance(e, SSLError):
        text = str(e)
        if "ingerprint" in text:
            return ExternalSystemError(
                f"cluster {cluster}: certificate mismatch: the node's TLS certificate does not match the pinned "
                "SHA-256 fingerprint; refusing to connect"
            )
        if "CERTIFICATE_VERIFY_FAILED" in text or "hostname" in text.lower():
            return ExternalSystemError(
                f"cluster {cluster}: certificate mismatch: the node's TLS certificate is not trusted by the "
                "configured CA file (or does not name this host)"
            )
        return ExternalSystemError(f"cluster {cluster}: the TLS handshake with Proxmox failed")
    if isinstance(e, ReadTimeoutError):
        return ExternalSystemError(
            f"cluster {cluster}: Proxmox did not answer within {timeout:g}s"
            + ("" if idempotent else "; the action may still have been started")
        )
    if not_sent(e):
        return ExternalSystemError(f"cluster {cluster}: no API URL of the cluster accepted a connection")
    return ExternalSystemError(
        f"cluster {cluster}: the connection to Proxmox was dropped"
        + ("" if idempotent else "; the action may or may not have happened")
    )


def not_sent(e: HTTPError) -> bool:
    """True when the request cannot have reached Proxmox: refused, unresolvable or connect timeout.

    urllib3's refused and unresolvable connections are kinds of its connect timeout.
    """
    return isinstance(e, ConnectTimeoutError)
