"""pvebot's SSH access to cluster nodes: its key per cluster, the nodes' pinned host keys, and every login.

Proxmox keeps ``/root/.ssh/authorized_keys`` as a link to the cluster-shared ``/etc/pve/priv/authorized_keys``:
one append on one node authorizes pvebot's key on all of them, and writing it needs quorum. Every command
goes through :class:`ClusterSsh`, which checks the pin first; a changed host key is refused before anything
is sent, written to the audit trail and announced on the ``updates`` topic.
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core.errors import ConfigurationError, Conflict, ExternalSystemError, HostKeyMismatch, InvalidArguments, NotFound
from core.model import Cluster, SshKey, SshKeyState, SshNode, Topic
from core.ports import CommandResult, Credentials, ShellTarget
from core.principal import Scope
from core.services import audit, notifications
from core.services.deps import Deps, SshDeps

log = logging.getLogger(__name__)

# the options of pvebot's line: a login that can run commands, and nothing forwarded through it
KEY_OPTIONS = "no-agent-forwarding,no-port-forwarding,no-X11-forwarding"
_APPEND = 'umask 077; touch "$1"; grep -qF -- "$2" "$1" || cat >> "$1"'
# rewrite in place (pmxcfs keeps the file's mode; a rename across its directories is not needed)
_REMOVE = 't=$(mktemp "$1.XXXXXX") && { grep -vF -- "$2" "$1" > "$t" || true; } && cat "$t" > "$1"; rm -f "$t"'
_COUNT = 'grep -cF -- "$2" "$1" || true'
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def check_env_name(env_name: str) -> None:
    """Refuse a ``--password-env`` value that is no variable's name: most likely the password itself,
    which is never repeated back into the channel."""
    if not _ENV_NAME.match(env_name):
        raise InvalidArguments("--password-env takes the name of an environment variable (letters, digits, _) "
                               "that holds the password, not the password itself")


def _script(body: str, *args: str) -> str:
    return "sh -c " + shlex.quote(body) + " pvebot " + " ".join(shlex.quote(a) for a in args)


def key_material(public_key: str) -> str:
    """The base64 part of a public line: what identifies the key inside an authorized_keys line."""
    return public_key.split()[1]


def comment_for(cluster: str, at: datetime) -> str:
    return f"pvebot:{cluster}:{at:%Y%m%d}"


def authorized_line(key: SshKey) -> str:
    return f"{KEY_OPTIONS} {key.public_key} {key.comment}\n"


def tools(deps: Deps) -> SshDeps:
    if deps.ssh is None:
        raise ConfigurationError("SSH to clusters is not set up in this pvebot process")
    return deps.ssh


@dataclass(frozen=True)
class NodeLine:
    """One node's outcome, as chat shows it: ``pve1: ok`` or ``pve1: 🔒 host key changed``."""

    node: str
    ok: bool
    text: str

    def show(self) -> str:
        return f"{'✅' if self.ok else '❌'} {self.node}: {self.text}"


class ClusterSsh:
    """One cluster's nodes and keys, and commands on them with the pin checked and refusals recorded."""

    def __init__(self, deps: Deps, cluster: Cluster) -> None:
        assert cluster.id is not None
        self.deps, self.cluster, self.tools = deps, cluster, tools(deps)
        self.cluster_id: int = cluster.id

    # -- stored state ------------------------------------------------------------------------

    def nodes(self) -> list[SshNode]:
        with self.deps.uow_factory(Scope.everything()) as uow:
            found = uow.ssh.nodes(self.cluster_id)
        if not found:
            raise NotFound(f"cluster {self.cluster.name} has no SSH nodes in its provisioning (clusters[].ssh)")
        return found

    def node(self, name: str) -> SshNode:
        for node in self.nodes():
            if node.node == name:
                return node
        raise NotFound(f"node {self.cluster.name}/{name} not found")

    def key(self, state: SshKeyState) -> SshKey | None:
        with self.deps.uow_factory(Scope.everything()) as uow:
            return next((k for k in uow.ssh.keys(self.cluster_id) if k.state is state), None)

    def key_for_login(self) -> SshKey:
        key = self.key(SshKeyState.ACTIVE)
        if key is None:
            raise Conflict(f"pvebot has no key on cluster {self.cluster.name} yet: `cluster keys push` first")
        return key

    def new_key(self) -> SshKey:
        """A fresh key in state NEW (any earlier NEW one, from an attempt that failed, is dropped)."""
        private, public, fingerprint = self.tools.keys.generate()
        now = self.deps.clock.now()
        key = SshKey(cluster_id=self.cluster_id, private_key_encrypted=self.tools.cipher.encrypt(private),
                     public_key=public, fingerprint=fingerprint, created_at=now, state=SshKeyState.NEW,
                     comment=comment_for(self.cluster.name, now))
        with self.deps.uow_factory(Scope.everything()) as uow:
            for old in uow.ssh.keys(self.cluster_id):
                if old.state is SshKeyState.NEW:
                    uow.ssh.remove_key(old)
            uow.ssh.add_key(key)
            uow.commit()
        return key

    def set_state(self, key: SshKey, state: SshKeyState) -> None:
        with self.deps.uow_factory(Scope.everything()) as uow:
            for stored in uow.ssh.keys(self.cluster_id):
                if stored.id == key.id:
                    stored.state = state
            uow.commit()

    def drop(self, key: SshKey) -> None:
        with self.deps.uow_factory(Scope.everything()) as uow:
            for stored in uow.ssh.keys(self.cluster_id):
                if stored.id == key.id:
                    uow.ssh.remove_key(stored)
            uow.commit()

    def credentials(self, key: SshKey) -> Credentials:
        return Credentials(private_key=self.tools.cipher.decrypt(key.private_key_encrypted))

    def password(self, env_name: str) -> Credentials:
        """The password for a first push, from the environment variable named (read now, never kept)."""
        check_env_name(env_name)
        value = self.tools.environ.get(env_name)
        if not value:
            # not repeated: a password typed by mistake can look like a variable's name too
            raise InvalidArguments("the environment variable that --password-env names is not set where pvebot "
                                   "runs this job")
        return Credentials(password=value)

    # -- commands ------------------------------------------------------------------------------

    def target(self, node: SshNode) -> ShellTarget:
        return ShellTarget(cluster=self.cluster.name, node=node.node, host=node.host, port=node.port,
                           user=node.user, host_key=node.host_key)

    def run(self, node: SshNode, credentials: Credentials, command: str, *, stdin: str | None = None,
            on_line: Callable[[str], None] | None = None, timeout: float | None = None) -> CommandResult:
        """``command`` on ``node``; a changed host key is audited and announced, then raised."""
        try:
            return self.tools.shell.run(self.target(node), credentials, command, stdin=stdin, on_line=on_line,
                                        timeout=timeout or self.tools.command_timeout)
        except HostKeyMismatch as e:
            self.host_key_refused(node, seen=e.seen)
            raise

    def host_key_refused(self, node: SshNode, *, seen: str) -> None:
        where = f"{self.cluster.name}/{node.node}"
        log.warning("refused %s: host key %s is not the pinned %s", where, seen, node.host_key)
        with self.deps.uow_factory(Scope.everything()) as uow:
            audit.record(uow, clock=self.deps.clock, actor="system", action="ssh.host_key_refused",
                         target=where, outcome="refused", detail={"seen": seen, "pinned": node.host_key})
            notifications.record(uow, notifications.Event(
                topic=Topic.UPDATES, key=f"hostkey:{self.cluster.name}:{node.node}:{seen}", failed=True,
                title=f"🔒 security: {where} shows a different SSH host key",
                text=f"seen {seen}, pinned {node.host_key}; pvebot refused the connection and sent nothing. "
                     f"If the node was reinstalled, check the key on its console and `cluster trust "
                     f"{self.cluster.name} {node.node} <fingerprint>`."), clock=self.deps.clock)
            uow.commit()

    def append(self, node: SshNode, credentials: Credentials, key: SshKey) -> None:
        self._checked(self.run(node, credentials, _script(_APPEND, node.keys_file, key_material(key.public_key)),
                               stdin=authorized_line(key)), node, "adding pvebot's key")

    def remove(self, node: SshNode, credentials: Credentials, key: SshKey) -> None:
        self._checked(self.run(node, credentials, _script(_REMOVE, node.keys_file, key_material(key.public_key))),
                      node, "removing the old key")

    def listed(self, node: SshNode, credentials: Credentials, key: SshKey) -> bool:
        """Whether ``key``'s line is in the node's authorized_keys (logging in with ``credentials``)."""
        result = self.run(node, credentials, _script(_COUNT, node.keys_file, key_material(key.public_key)))
        counts = [line.strip() for line in result.output if line.strip().isdigit()]
        return bool(counts) and int(counts[-1]) > 0

    def login(self, node: SshNode, credentials: Credentials) -> None:
        self._checked(self.run(node, credentials, "true"), node, "the login test")

    def _checked(self, result: CommandResult, node: SshNode, what: str) -> None:
        if result.exit_status != 0:
            raise ExternalSystemError(f"{what} on {self.cluster.name}/{node.node} ended with exit status "
                                      f"{result.exit_status}")

    def record_health(self, node: SshNode, health: str) -> None:
        with self.deps.uow_factory(Scope.everything()) as uow:
            for stored in uow.ssh.nodes(self.cluster_id):
                if stored.node == node.node:
                    stored.health, stored.checked_at = health[:200], self.deps.clock.now()
            uow.commit()


def pin(deps: Deps, cluster: Cluster, node_name: str, fingerprint: str, *, actor: str) -> tuple[str | None, bool]:
    """Pin ``fingerprint`` for a node after checking that the node shows exactly that key now.

    Returns:
        The pin it replaces (or None) and whether anything changed.

    Raises:
        InvalidArguments: the node shows another key than the one given (nothing is pinned).
    """
    ssh = ClusterSsh(deps, cluster)
    node = ssh.node(node_name)
    seen = ssh.tools.shell.host_key(ssh.target(node))
    if seen != fingerprint:
        raise InvalidArguments(f"{cluster.name}/{node_name} shows {seen}, not {fingerprint}: nothing was pinned")
    if node.host_key == fingerprint:
        return node.host_key, False
    with deps.uow_factory(Scope.everything()) as uow:
        for stored in uow.ssh.nodes(ssh.cluster_id):
            if stored.node == node_name:
                stored.host_key = fingerprint
        audit.record(uow, clock=deps.clock, actor=actor, action="ssh.host_key_pinned",
                     target=f"{cluster.name}/{node_name}", detail={"fingerprint": fingerprint,
                                                                    "replaced": node.host_key})
        uow.commit()
    return node.host_key, True
