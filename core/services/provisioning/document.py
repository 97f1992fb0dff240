"""Provisioning documents: the typed specification, and the checks that find every problem at once.

``validate`` reports each problem with its line and path inside the document; nothing here
touches the database.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigurationError, InvalidArguments
from core.model import Role, TlsMode, Topic
from core.services import addresses
from core.services.catalog import CATALOG
from core.services.identity import GROUP_ROLES

PathT = tuple[str | int, ...]
Locate = Callable[[PathT], str]

QUOTA_KEYS = ("vms", "cores", "memory_gb", "disk_gb")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[a-z0-9.-]+\.[a-z]{2,}$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$")
_TOKEN_ID = re.compile(r"^[^@!\s]+@[a-z0-9.-]+![a-z0-9_-]+$", re.IGNORECASE)
_FINGERPRINT = re.compile(r"^([0-9A-F]{2}:){31}[0-9A-F]{2}$")
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_URL = re.compile(r"^https://[^\s/]+(:\d+)?/?$")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
# what a policy may name: every operation may be made to wait; defaults come from the catalog
APPROVABLE_ACTIONS = frozenset(op.name for op in CATALOG)
DEFAULT_APPROVAL_ACTIONS = tuple(sorted(CATALOG.default_approvals))
SHOWN_CHARS = 60
# a token secret pasted where its id belongs: `user@realm!name=<uuid>`, or the bare uuid
_SECRET_LIKE = re.compile(r"=.*$|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)


def shown(value: Any, *, secret_like: bool = False) -> str:
    """How a value from the document is quoted in a message: short, one line, never a pasted secret.

    Args:
        value: what the document holds at the offending path.
        secret_like: the key is one where a token secret is sometimes pasted by mistake; such
            parts are cut out.

    Returns:
        ``'text'`` for strings (longer ones cut in the middle, so both ends show), YAML spelling
        for scalars, and only the kind for mappings and lists.
    """
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = str(value)
    if secret_like:
        text = _SECRET_LIKE.sub("…", text)
    if len(text) > SHOWN_CHARS:
        head = (SHOWN_CHARS - 1) // 2
        text = text[:head] + "…" + text[len(text) - (SHOWN_CHARS - 1 - head):]
    return repr(text)


@dataclass(frozen=True)
class SshNodeSpec:
    """A node pvebot reaches over SSH; ``host_key`` None leaves it to ``cluster trust`` (or keeps its pin)."""

    name: str
    host: str
    port: int
    host_key: str | None


@dataclass(frozen=True)
class SshSpec:
    user: str
    authorized_keys: str
    nodes: tuple[SshNodeSpec, ...]


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    api_urls: tuple[str, ...]
    token_id: str
    token_secret_env: str
    tls_mode: TlsMode
    tls_value: str | None
    shared_templates: tuple[int, ...]
    path: PathT
    ssh: SshSpec | None = None


@dataclass(frozen=True)
class GroupSpec:
    """An Azure AD group whose members become users of the company with ``role``."""

    group_id: str
    role: Role
    path: PathT


@dataclass(frozen=True)
class NetworkSpec:
    """One of a company's IP ranges: an IPv4 CIDR on a cluster, reached through a bridge (and VLAN) or a vnet."""

    name: str
    cluster: str
    cidr: str
    gateway: str | None
    vlan: int | None
    bridge: str | None
    vnet: str | None
    dns: tuple[str, ...]
    search_domain: str | None
    reserved: tuple[str, ...]
    path: PathT

    @property
    def segment(self) -> tuple[str, str | int | None]:
        """What two ranges must not share with overlapping addresses: a VLAN (None: untagged) or a vnet."""
        return ("vnet", self.vnet) if self.vnet else ("vlan", self.vlan)

    def describe_segment(self) -> str:
        kind, value = self.segment
        return f"vnet {value}" if kind == "vnet" else (f"VLAN {value}" if value is not None else "untagged")


@dataclass(frozen=True)
class SubscriptionSpec:
    """A notification subscription the file declares: a channel hears a topic of its company (or every company)."""

    topic: Topic
    channel: str
    vm: str | None = None
    only_failures: bool = False

    @property
    def key(self) -> tuple[Topic, str, str | None, bool]:
        return self.topic, self.channel, self.vm, self.only_failures


@dataclass(frozen=True)
class CompanySpec:
    slug: str
    name: str
    email_domains: tuple[str, ...]
    pools: tuple[tuple[str, str], ...]
    quotas: dict[str, int]
    approval: dict[str, Any]
    path: PathT
    teams_groups: tuple[GroupSpec, ...] = ()
    networks: tuple[NetworkSpec, ...] = ()
    backup: dict[str, Any] = field(default_factory=dict)
    # None: the file says nothing of them (subscriptions typed in chat are never touched either way)
    notifications: tuple[SubscriptionSpec, ...] | None = None

    @property
    def directory_groups(self) -> list[dict[str, str]]:
        """The groups as :attr:`Company.directory_groups` stores them."""
        return [{"group_id": g.group_id, "role": g.role.value} for g in self.teams_groups]


@dataclass(frozen=True)
class IdentitySpec:
    platform: str
    workspace_id: str
    user_id: str


@dataclass(frozen=True)
class UserSpec:
    email: str
    name: str
    role: Role
    company: str | None
    companies: tuple[str, ...]
    active: bool
    identities: tuple[IdentitySpec, ...]
    path: PathT


@dataclass
class Spec:
    clusters: list[ClusterSpec] = field(default_factory=list)
    companies: list[CompanySpec] = field(default_factory=list)
    users: list[UserSpec] = field(default_factory=list)
    # the provider's own channels (every company); None: not in the file
    notifications: tuple[SubscriptionSpec, ...] | None = None


class _Checker:
    """Collects every problem of a document, each with where it is."""

    def __init__(self, locate: Locate) -> None:
        self.locate = locate
        self.problems: list[str] = []
        # required keys reported missing: their own checks would only say the same again
        self._missing: set[PathT] = set()

    def fail(self, path: PathT, message: str) -> None:
        if path in self._missing:
            return
        where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        self.problems.append(f"{self.locate(path)}: {where or 'document'}: {message}")

    def mapping(self, value: Any, path: PathT, *, allowed: Sequence[str], required: Sequence[str] = ()) -> bool:
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping, got {shown(value)}")
            return False
        for key in value:
            if key not in allowed:
                self.fail((*path, str(key)), f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                self.fail(path, f"'{key}' is required")
                self._missing.add((*path, key))
        return True

    def string(self, value: Any, path: PathT, pattern: re.Pattern[str] | None = None, hint: str = "", *,
               secret_like: bool = False) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.fail(path, f"must be a non-empty string, got {shown(value, secret_like=secret_like)}")
            return None
        if pattern is not None and not pattern.match(value):
            self.fail(path, f"{shown(value, secret_like=secret_like)} is not valid{': ' + hint if hint else ''}")
            return None
        return value

    def strings(self, value: Any, path: PathT, pattern: re.Pattern[str] | None = None, hint: str = "") -> list[str]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(path, f"must be a list, got {shown(value)}")
            return []
        out = [self.string(v, (*path, i), pattern, hint) for i, v in enumerate(value)]
        return [v for v in out if v is not None]

    def integer(self, value: Any, path: PathT, *, low: int = 0, high: int = 10**9) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.fail(path, f"must be a whole number from {low} to {high}, got {shown(value)}")
            return None
        return value

    def items(self, doc: Mapping[str, Any], key: str) -> list[tuple[PathT, Any]]:
        value = doc.get(key) or []
        if not isinstance(value, list):
            self.fail((key,), f"must be a list, got {shown(value)}")
            return []
        return [((key, i), v) for i, v in enumerate(value)]


def validate(doc: Any, *, locate: Locate, env: Mapping[str, str]) -> Spec:
    """Check a whole provisioning document.

    Args:
        doc: the parsed YAML.
        locate: turns a path inside the document into "line N" for messages.
        env: where ``token_secret_env`` names are looked up.

    Returns:
        The typed specification.

    Raises:
        ConfigurationError: listing every problem, one per line, each with its line and path.
    """
    c = _Checker(locate)
    spec = Spec()
    if doc is None:
        doc = {}
    if not c.mapping(doc, (), allowed=("clusters", "companies", "users", "notifications")):
        raise ConfigurationError("\n".join(c.problems))
    if "notifications" in doc:
        spec.notifications = _notifications(c, doc["notifications"], ("notifications",), provider=True)
    _clusters(c, doc, spec, env)
    _companies(c, doc, spec)
    _users(c, doc, spec)
    _duplicates(c, spec)
    _overlapping_networks(c, spec)
    if c.problems:
        raise ConfigurationError("\n".join(c.problems))
    return spec


def _clusters(c: _Checker, doc: Mapping[str, Any], spec: Spec, env: Mapping[str, str]) -> None:
    allowed = ("name", "api_urls", "token_id", "token_secret_env", "tls", "shared_templates", "ssh")
    for path, item in c.items(doc, "clusters"):
        # tls is required: there is no "system CA" mode, and a default would hide an unverified connection
        if not c.mapping(item, path, allowed=allowed,
                         required=("name", "api_urls", "token_id", "token_secret_env", "tls")):
            continue
        name = c.string(item.get("name"), (*path, "name"), _NAME, "lower-case letters, digits, - and _")
        urls = c.strings(item.get("api_urls"), (*path, "api_urls"), _URL, "like https://10.0.0.11:8006")
        if "api_urls" in item and not urls and isinstance(item.get("api_urls"), list):
            c.fail((*path, "api_urls"), "needs at least one URL")
        token_id = c.string(item.get("token_id"), (*path, "token_id"), _TOKEN_ID, "like pvebot@pve!bot (no secret)",
                            secret_like=True)
        env_name = _token_secret_env(c, item.get("token_secret_env"), (*path, "token_secret_env"))
        if env_name and not env.get(env_name):
            c.fail((*path, "token_secret_env"), f"environment variable {env_name} is not set")
        mode, value = _tls(c, item["tls"], (*path, "tls")) if "tls" in item else (None, None)
        templates = item.get("shared_templates") or []
        vmids = [c.integer(v, (*path, "shared_templates", i), low=100, high=999999999) for i, v in enumerate(templates)]
        ssh = _ssh(c, item["ssh"], (*path, "ssh")) if "ssh" in item else None
        if name and urls and token_id and env_name and mode:
            spec.clusters.append(
                ClusterSpec(name, tuple(urls), token_id, env_name, mode, value,
                            tuple(v for v in vmids if v is not None), path, ssh)
            )


_SSH_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]*[A-Za-z0-9])?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_ABS_PATH = re.compile(r"^/[^\s'\"$`\\]+$")


def _ssh(c: _Checker, ssh: Any, path: PathT) -> SshSpec | None:
    if not c.mapping(ssh, path, allowed=("user", "authorized_keys", "nodes"), required=("nodes",)):
        return None
    user = c.string(ssh.get("user", "root"), (*path, "user"), _USER, "a login name like root")
    keys = c.string(ssh.get("authorized_keys", "/etc/pve/priv/authorized_keys"), (*path, "authorized_keys"),
                    _ABS_PATH, "an absolute path without spaces or quotes")
    nodes: list[SshNodeSpec] = []
    for npath, node in c.items(ssh, "nodes") if isinstance(ssh.get("nodes"), list) else []:
        npath = (*path, *npath)
        if not c.mapping(node, npath, allowed=("name", "host", "port", "host_key"), required=("name", "host")):
            continue
        name = c.string(node.get("name"), (*npath, "name"), _NAME, "the Proxmox node name")
        host = c.string(node.get("host"), (*npath, "host"), _HOST, "an address or host name")
        port = c.integer(node.get("port", 22), (*npath, "port"), low=1, high=65535)
        host_key = None
        if node.get("host_key") is not None:
            host_key = c.string(node.get("host_key"), (*npath, "host_key"), _SSH_FINGERPRINT,
                                "SHA256: and 43 characters, as `ssh-keygen -lf` prints it")
            if host_key is None:
                continue
        if name and host and port is not None:
            nodes.append(SshNodeSpec(name, host, port, host_key))
    if not isinstance(ssh.get("nodes"), list) or not ssh.get("nodes"):
        c.fail((*path, "nodes"), "needs at least one node")
    if user and keys and nodes:
        return SshSpec(user, keys, tuple(nodes))
    return None


def _token_secret_env(c: _Checker, value: Any, path: PathT) -> str | None:
    if isinstance(value, str) and value.strip() and not _ENV_NAME.match(value):
        # not a variable name: most likely the secret itself, pasted in; never repeat it
        c.fail(path, "is not an environment variable name like PVE_LAB_TOKEN (value not shown: it may be the "
                     "secret; put the secret in the environment and its name here)")
        return None
    return c.string(value, path, _ENV_NAME, "an env var name")


def _tls(c: _Checker, tls: Any, path: PathT) -> tuple[TlsMode | None, str | None]:
    if not c.mapping(tls, path, allowed=("fingerprint", "ca_file", "verify")):
        return None, None
    given = [k for k in ("fingerprint", "ca_file", "verify") if k in tls]
    if len(given) != 1:
        c.fail(path, "give exactly one of fingerprint, ca_file or verify: false")
        return None, None
    if "fingerprint" in tls:
        fp = c.string(str(tls["fingerprint"]).upper(), (*path, "fingerprint"), _FINGERPRINT,
                      "32 colon-separated hex pairs (SHA-256)")
        return (TlsMode.FINGERPRINT, fp) if fp else (None, None)
    if "ca_file" in tls:
        ca = c.string(tls["ca_file"], (*path, "ca_file"))
        if ca and not Path(ca).is_file():
            c.fail((*path, "ca_file"), f"file {shown(ca)} does not exist")
            return None, None
        return (TlsMode.CA_FILE, ca) if ca else (None, None)
    if tls["verify"] is not False:
        c.fail((*path, "verify"), f"only 'verify: false' is allowed here, got {shown(tls['verify'])}; use ca_file or "
                                  "fingerprint to verify")
        return None, None
    return TlsMode.INSECURE, None


def _companies(c: _Checker, doc: Mapping[str, Any], spec: Spec) -> None:
    allowed = ("slug", "name", "email_domains", "pools", "quotas", "approval", "teams_groups", "networks", "backup",
               "notifications")
    for path, item in c.items(doc, "companies"):
        if not c.mapping(item, path, allowed=allowed, required=("slug", "name")):
            continue
        slug = c.string(item.get("slug"), (*path, "slug"), _SLUG, "lower-case letters, digits and -")
        name = c.string(item.get("name"), (*path, "name"))
        domains = c.strings(item.get("email_domains"), (*path, "email_domains"), _DOMAIN, "a domain like acme.example")
        pools: list[tuple[str, str]] = []
        for i, p in enumerate(item.get("pools") or []):
            ppath = (*path, "pools", i)
            if c.mapping(p, ppath, allowed=("cluster", "pool"), required=("cluster", "pool")):
                cl = c.string(p.get("cluster"), (*ppath, "cluster"), _NAME)
                pool = c.string(p.get("pool"), (*ppath, "pool"), _POOL, "a Proxmox pool id")
                if cl and pool:
                    pools.append((cl, pool))
        quotas: dict[str, int] = {}
        if c.mapping(item.get("quotas") or {}, (*path, "quotas"), allowed=QUOTA_KEYS):
            for key, value in (item.get("quotas") or {}).items():
                q = c.integer(value, (*path, "quotas", key))
                if q is not None and key in QUOTA_KEYS:
                    quotas[key] = q
        approval = _approval(c, item.get("approval") or {}, (*path, "approval"))
        groups = _teams_groups(c, item.get("teams_groups"), (*path, "teams_groups"))
        networks = _networks(c, item.get("networks"), (*path, "networks"))
        backup = _backup(c, item.get("backup") or {}, (*path, "backup"))
        declared = (_notifications(c, item["notifications"], (*path, "notifications"), provider=False)
                    if "notifications" in item else None)
        approvers = approval.get("approvers_channel")
        for i, sub in enumerate((item.get("notifications") or []) if declared and approvers else []):
            if isinstance(sub, dict) and sub.get("topic") == Topic.APPROVALS.value and sub.get("channel") == approvers:
                # the cards themselves go there, edited with each decision: a subscription would repeat each one
                c.fail((*path, "notifications", i, "channel"), f"{shown(approvers)} is the company's approvers "
                       "channel (approval.approvers_channel): it gets the approval cards themselves already")
        if groups and not item.get("email_domains"):
            # a member is added only when their email is in the company's domains: without any, nobody ever is
            c.fail((*path, "teams_groups"), "needs email_domains: a group member is added only with an email in them")
        if slug and name:
            spec.companies.append(
                CompanySpec(slug, name, tuple(d.lower() for d in domains), tuple(pools), quotas, approval, path,
                            teams_groups=tuple(groups), networks=tuple(networks), backup=backup,
                            notifications=declared)
            )


_CHANNEL = re.compile(r"^(slack|teams):\S{1,290}$")


def _notifications(c: _Checker, value: Any, path: PathT, *, provider: bool) -> tuple[SubscriptionSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        c.fail(path, f"must be a list, got {shown(value)}")
        return ()
    out: list[SubscriptionSpec] = []
    for i, item in enumerate(value):
        npath = (*path, i)
        if not c.mapping(item, npath, allowed=("topic", "channel", "vm", "only_failures"),
                         required=("topic", "channel")):
            continue
        topic_text = c.string(item.get("topic"), (*npath, "topic"))
        channel = c.string(item.get("channel"), (*npath, "channel"), _CHANNEL,
                           "slack:C0123ABCD or teams:<conversation id>")
        topic = next((t for t in Topic if t.value == topic_text), None)
        if topic_text and topic is None:
            known = ", ".join(t.value for t in Topic)
            c.fail((*npath, "topic"), f"unknown topic {shown(topic_text)} (one of: {known})")
        elif topic is Topic.UPDATES and not provider:
            c.fail((*npath, "topic"), "updates are for the provider's own channels: declare them under the "
                                      "top-level notifications")
        vm = c.string(item["vm"], (*npath, "vm")) if item.get("vm") is not None else None
        only = item.get("only_failures", False)
        if not isinstance(only, bool):
            c.fail((*npath, "only_failures"), f"must be true or false, got {shown(only)}")
        if topic is not None and channel:
            out.append(SubscriptionSpec(topic, channel, vm[:64] if vm else None, bool(only)))
    return tuple(out)


def _teams_groups(c: _Checker, value: Any, path: PathT) -> list[GroupSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        c.fail(path, f"must be a list, got {shown(value)}")
        return []
    out: list[GroupSpec] = []
    for i, item in enumerate(value):
        gpath = (*path, i)
        if not c.mapping(item, gpath, allowed=("group_id", "role"), required=("group_id", "role")):
            continue
        group_id = c.string(item.get("group_id"), (*gpath, "group_id"), _GUID,
                            "an Azure AD group object id like 0f8fad5b-d9cb-469f-a165-70867728950e")
        role = item.get("role")
        if role in (Role.SUPER_ADMIN, Role.SALESPERSON):
            c.fail((*gpath, "role"), f"a group cannot give {role}: it reaches beyond one company, and whoever manages "
                                     "the group in Azure AD would hand it out; list such people under users")
            continue
        if "role" in item and role not in GROUP_ROLES:
            roles = ", ".join(r.value for r in GROUP_ROLES)
            c.fail((*gpath, "role"), f"{shown(role)} is not a group role; one of {roles}")
            continue
        if group_id and role:
            out.append(GroupSpec(group_id.lower(), Role(role), gpath))
    return out


_BRIDGE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*[A-Za-z0-9]$")  # pve-bridge-id
_VNET = re.compile(r"^[a-zA-Z][a-zA-Z0-9]*[a-zA-Z0-9]$")  # pve-network's vnet id, at most 8 characters
NETWORK_KEYS = ("name", "cluster", "cidr", "gateway", "vlan", "bridge", "vnet", "dns", "search_domain", "reserved")


def _networks(c: _Checker, value: Any, path: PathT) -> list[NetworkSpec]:
    if value is None:
        return []
    if not isinstance(value, list):
        c.fail(path, "must be a list")
        return []
    out: list[NetworkSpec] = []
    for i, item in enumerate(value):
        npath = (*path, i)
        if not c.mapping(item, npath, allowed=NETWORK_KEYS, required=("name", "cluster", "cidr")):
            continue
        before = len(c.problems)
        name = c.string(item.get("name"), (*npath, "name"), _NAME, "lower-case letters, digits, - and _")
        cluster = c.string(item.get("cluster"), (*npath, "cluster"), _NAME)
        net = _cidr(c, item.get("cidr"), (*npath, "cidr"))
        gateway = _address(c, item.get("gateway"), (*npath, "gateway"), net, what="gateway")
        vlan = c.integer(item["vlan"], (*npath, "vlan"), low=1, high=4094) if item.get("vlan") is not None else None
        bridge, vnet = item.get("bridge"), item.get("vnet")
        if (bridge is None) == (vnet is None):
            c.fail(npath, "give exactly one of bridge (with an optional vlan) or vnet (an SDN vnet)")
        elif bridge is not None:
            c.string(bridge, (*npath, "bridge"), _BRIDGE, "a bridge name like vmbr0")
        else:
            if c.string(vnet, (*npath, "vnet"), _VNET, "an SDN vnet id") and len(vnet) > 8:
                c.fail((*npath, "vnet"), "an SDN vnet id has at most 8 characters")
            if item.get("vlan") is not None:
                c.fail((*npath, "vlan"), "a vnet carries its own tag; leave vlan out")
        dns = [d for j, d in enumerate(c.strings(item.get("dns"), (*npath, "dns")))
               if _address(c, d, (*npath, "dns", j), None, what="DNS server")]
        search = item.get("search_domain")
        if search is not None:
            search = c.string(search, (*npath, "search_domain"), _DOMAIN, "a domain like acme.example")
        reserved = c.strings(item.get("reserved"), (*npath, "reserved"))
        for j, block in enumerate(reserved):
            _reserved(c, block, (*npath, "reserved", j), net)
        if len(c.problems) == before and name and cluster and net:
            out.append(NetworkSpec(name, cluster, str(net), gateway, vlan, bridge, vnet, tuple(dns), search,
                                   tuple(reserved), npath))
    return out


def _cidr(c: _Checker, value: Any, path: PathT) -> ipaddress.IPv4Network | None:
    text = c.string(value, path)
    if text is None:
        return None
    try:
        net = addresses.parse_network(text)  # what chat says of a malformed network, word for word
    except InvalidArguments as e:
        c.fail(path, e.user_message)
        return None
    if net.prefixlen > 30:
        c.fail(path, f"{text} is too small: a range needs at least a /30")
        return None
    return net


def _address(c: _Checker, value: Any, path: PathT, net: ipaddress.IPv4Network | None, *, what: str) -> str | None:
    if value is None:
        return None
    text = c.string(value, path)
    if text is None:
        return None
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        c.fail(path, f"{what} '{text[:40]}' is not an IPv4 address")
        return None
    if net is not None and (address not in net or address in (net.network_address, net.broadcast_address)):
        c.fail(path, f"{what} {text} is outside {net} (or is its network or broadcast address)")
        return None
    return text


def _reserved(c: _Checker, block: str, path: PathT, net: ipaddress.IPv4Network | None) -> None:
    first, sep, last = block.partition("-")
    try:
        lo, hi = ipaddress.IPv4Address(first.strip()), ipaddress.IPv4Address(last.strip() if sep else first.strip())
    except ValueError:
        c.fail(path, f"'{block[:40]}' is not an address or a block like 10.20.0.1-10.20.0.10")
        return
    if hi < lo:
        c.fail(path, f"block {block} ends before it starts")
    elif net is not None and (lo not in net or hi not in net):
        c.fail(path, f"reserved {block} is outside {net}")


def _overlapping_networks(c: _Checker, spec: Spec) -> None:
    """Two ranges whose addresses overlap on one cluster and one VLAN (or vnet) would hand out one address twice."""
    seen: list[tuple[CompanySpec, NetworkSpec]] = []
    for company in spec.companies:
        for net in company.networks:
            for other_company, other in seen:
                if (other.cluster == net.cluster and other.segment == net.segment
                        and ipaddress.IPv4Network(other.cidr).overlaps(ipaddress.IPv4Network(net.cidr))):
                    c.fail(net.path, f"{net.cidr} ({company.slug}/{net.name}) overlaps {other.cidr} "
                                     f"({other_company.slug}/{other.name}, {c.locate(other.path)}) on cluster "
                                     f"{net.cluster} {net.describe_segment()}")
            seen.append((company, net))


RETENTION_KEYS = ("keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly")
_STORAGE = re.compile(r"^[a-z][a-z0-9\-_.]*[a-z0-9]$", re.IGNORECASE)


def _backup(c: _Checker, value: Any, path: PathT) -> dict[str, Any]:
    """``backup: {storages, max_schedules, max_age_hours, default_retention}`` as Company.backup_policy keeps it."""
    allowed = ("storages", "max_schedules", "max_age_hours", "default_retention")
    if not c.mapping(value, path, allowed=allowed):
        return {}
    out: dict[str, Any] = {}
    if "storages" in value:
        out["storages"] = c.strings(value["storages"], (*path, "storages"), _STORAGE, "a Proxmox storage id")
    for key, high in (("max_schedules", 100), ("max_age_hours", 24 * 366)):
        if key in value:
            number = c.integer(value[key], (*path, key), low=1 if key == "max_age_hours" else 0, high=high)
            if number is not None:
                out[key] = number
    retention = value.get("default_retention")
    if retention is not None and c.mapping(retention, (*path, "default_retention"), allowed=RETENTION_KEYS):
        kept: dict[str, int] = {}
        for key, keep in retention.items():
            number = c.integer(keep, (*path, "default_retention", key), low=0, high=10000)
            if number is not None and key in RETENTION_KEYS:
                kept[key] = number
        out["default_retention"] = kept
    return out


def _approval(c: _Checker, value: Any, path: PathT) -> dict[str, Any]:
    allowed = ("required_for", "exempt", "expires_minutes", "approvers_channel")
    if not c.mapping(value, path, allowed=allowed):
        return {}
    out: dict[str, Any] = {}
    if "required_for" in value:
        # additions to the default list
        actions = c.strings(value["required_for"], (*path, "required_for"))
        for i, a in enumerate(actions):
            if a not in APPROVABLE_ACTIONS:
                c.fail((*path, "required_for", i),
                       f"unknown action {shown(a)} (known: {', '.join(sorted(APPROVABLE_ACTIONS))})")
        out["required_for"] = sorted(set(actions))
    if "exempt" in value:
        # defaults a company chooses to run without a second person; never vm.delete
        exempt = c.strings(value["exempt"], (*path, "exempt"))
        for i, a in enumerate(exempt):
            if a in CATALOG.mandatory_approvals:
                c.fail((*path, "exempt", i), f"{a} always needs approval; it cannot be exempt")
            elif a not in DEFAULT_APPROVAL_ACTIONS:
                c.fail((*path, "exempt", i), f"{shown(a)} is not a default approval action; one of "
                                             f"{', '.join(DEFAULT_APPROVAL_ACTIONS)}")
        out["exempt"] = sorted(set(exempt))
    if "expires_minutes" in value:
        minutes = c.integer(value["expires_minutes"], (*path, "expires_minutes"), low=1, high=7 * 24 * 60)
        if minutes is not None:
            out["expires_minutes"] = minutes
    if value.get("approvers_channel") is not None:
        channel = c.string(value["approvers_channel"], (*path, "approvers_channel"))
        if channel and ":" not in channel:
            c.fail((*path, "approvers_channel"),
                   f"{shown(channel)} is not a channel: write it as slack:C0123ABCD or teams:<conversation id>")
        elif channel:
            out["approvers_channel"] = channel
    return out


IDENTITY_KEYS = {"slack": ("team_id", "user_id"), "teams": ("tenant_id", "aad_object_id")}


def _users(c: _Checker, doc: Mapping[str, Any], spec: Spec) -> None:
    allowed = ("email", "name", "role", "company", "companies", "active", "identities")
    for path, item in c.items(doc, "users"):
        if not c.mapping(item, path, allowed=allowed, required=("email", "role")):
            continue
        email = c.string(str(item.get("email", "")).lower(), (*path, "email"), _EMAIL, "an email address")
        role: Role | None = None
        try:
            role = Role(item.get("role"))
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            c.fail((*path, "role"), f"{shown(item.get('role'))} is not a role; one of {roles}")
        company = item.get("company")
        if company is not None:
            company = c.string(company, (*path, "company"), _SLUG)
        companies = c.strings(item.get("companies"), (*path, "companies"), _SLUG)
        if role in (Role.USER, Role.COMPANY_ADMIN) and not company:
            c.fail(path, f"a {role.value} needs 'company'")
        if companies and role is not Role.SALESPERSON:
            c.fail((*path, "companies"), "only a salesperson is assigned to several companies")
        if role is Role.SALESPERSON and not companies and not company:
            c.fail(path, "a salesperson needs 'companies' (or 'company')")
        active = item.get("active", True)
        if not isinstance(active, bool):
            c.fail((*path, "active"), f"must be true or false, got {shown(active)}")
        identities: list[IdentitySpec] = []
        for i, ident in enumerate(item.get("identities") or []):
            ipath = (*path, "identities", i)
            platform = ident.get("platform") if isinstance(ident, Mapping) else None
            if platform not in IDENTITY_KEYS:
                given = f", got {shown(platform)}" if platform is not None else ""
                c.fail(ipath, f"needs platform: slack or teams{given}")
                continue
            keys = IDENTITY_KEYS[platform]
            if c.mapping(ident, ipath, allowed=("platform", *keys), required=keys):
                ws = c.string(str(ident.get(keys[0], "")), (*ipath, keys[0]))
                uid = c.string(str(ident.get(keys[1], "")), (*ipath, keys[1]))
                if ws and uid:
                    identities.append(IdentitySpec(platform, ws, uid))
        name = str(item.get("name") or (email or "").split("@")[0])
        if email and role:
            spec.users.append(
                UserSpec(email, name, role, company, tuple(companies), bool(active), tuple(identities), path)
            )


def _duplicates(c: _Checker, spec: Spec) -> None:
    def check(kind: str, keyed: list[tuple[Any, PathT]]) -> None:
        seen: dict[Any, PathT] = {}
        for key, path in keyed:
            if key in seen:
                c.fail(path, f"{kind} {key} appears twice (first at {c.locate(seen[key])})")
            seen.setdefault(key, path)

    check("cluster", [(s.name, s.path) for s in spec.clusters])
    check("company", [(s.slug, s.path) for s in spec.companies])
    check("user", [(s.email, s.path) for s in spec.users])
    check(
        "identity",
        [((i.platform, i.workspace_id, i.user_id), (*u.path, "identities")) for u in spec.users for i in u.identities],
    )
    check("pool", [(f"{cluster}/{pool}", (*s.path, "pools")) for s in spec.companies for cluster, pool in s.pools])
    check("network", [(f"{s.slug}/{n.name}", n.path) for s in spec.companies for n in s.networks])
    # a group names one company: a member in it must not depend on which company pvebot looks at first
    check("Teams group", [(g.group_id, g.path) for s in spec.companies for g in s.teams_groups])
