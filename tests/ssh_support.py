"""Real OpenSSH servers standing in for the nodes of a Proxmox cluster.

Each node is its own ``/usr/sbin/sshd -D`` on a loopback port with its own Ed25519 host key. They share one
temporary directory standing in for the cluster-shared ``/etc/pve/priv/`` (their ``AuthorizedKeysFile``), and
one ``bin/`` first on the session's PATH holding a stand-in ``apt-get``.

Safety on a CI machine: sshd listens on 127.0.0.1 only, lets in one dedicated unprivileged account
(``AllowUsers``; never root), whose password is random per test session and locked again afterwards. The
account is created once if missing. Password login is on only in these test configs.
"""

from __future__ import annotations

import base64
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from tests.support import service_missing

SSHD = "/usr/sbin/sshd"
USER = "pvebot-sshtest"

RUNNING_KERNEL = "6.8.12-9-pve"
UNAME = """#!/bin/sh
# a stand-in uname: the release a Proxmox node would run
case "$1" in -r) echo "{release}" ;; *) /usr/bin/uname "$@" ;; esac
"""
APT_GET = """#!/bin/sh
# a stand-in apt-get: says what it was asked, prints apt-like lines, and for dist-upgrade waits at a gate
# (the test opens it once it has seen the first line in chat: proof that output streams while it runs)
echo "apt-get $*" >> "{root}/apt.log"
case "$*" in
  *dist-upgrade*)
    echo "Reading package lists..."
    echo "Unpacking pve-manager (8.4.2) over (8.4.1) ..."
    n=0
    while [ ! -e "{root}/gate" ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
    [ -e "{root}/gate" ] || {{ echo "E: the test never opened the gate" >&2; exit 100; }}
    echo "Setting up pve-manager (8.4.2) ..."
    echo "Setting up proxmox-kernel-6.8.12-10-pve (6.8.12-10) ..."
    : > "{root}/boot/vmlinuz-6.8.12-10-pve"
    ;;
  *update*)
    echo "Hit:1 http://deb.debian.org/debian bookworm InRelease"
    echo "Reading package lists... Done"
    ;;
esac
"""


def fingerprint(public_line: str) -> str:
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _host_key(path: Path) -> str:
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    path.chmod(0o600)
    public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    path.with_suffix(".pub").write_text(public + "\n")
    return fingerprint(public)


@dataclass
class SshNodeServer:
    name: str
    port: int
    host_key: str
    key_path: Path
    config: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class SshCluster:
    root: Path
    password: str
    nodes: dict[str, SshNodeServer] = field(default_factory=dict)

    @property
    def keys_file(self) -> Path:
        return self.root / "priv" / "authorized_keys"

    @property
    def apt_log(self) -> Path:
        return self.root / "apt.log"

    def open_gate(self) -> None:
        (self.root / "gate").touch()

    def yaml(self, *, pin: bool = True) -> str:
        """The provisioning file's ``ssh:`` block (indented for a cluster entry)."""
        lines = [f"    ssh:\n      user: {USER}\n      authorized_keys: {self.keys_file}\n      nodes:"]
        for node in self.nodes.values():
            pinned = f', host_key: "{node.host_key}"' if pin else ""
            lines.append(f"        - {{name: {node.name}, host: 127.0.0.1, port: {node.port}{pinned}}}")
        return "\n".join(lines) + "\n"

    def restart(self, name: str) -> None:
        _stop(self.nodes[name])
        _start(self.nodes[name])

    def new_host_key(self, name: str) -> str:
        """Reinstall-like: the node gets a new host key (sshd restarted with it)."""
        node = self.nodes[name]
        _stop(node)
        node.host_key = _host_key(node.key_path)
        _start(node)
        return node.host_key


def _start(node: SshNodeServer) -> None:
    node.process = subprocess.Popen([SSHD, "-D", "-f", str(node.config), "-p", str(node.port), "-E", str(node.log)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise AssertionError(f"sshd for {node.name} exited: {node.log_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", node.port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"sshd for {node.name} does not listen on {node.port}")


def _stop(node: SshNodeServer) -> None:
    if node.process is not None and node.process.poll() is None:
        node.process.terminate()
        try:
            node.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.process.kill()
            node.process.wait()
    node.process = None


def _ensure_user(password: str) -> pwd.struct_passwd:
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--create-home", "--shell", "/bin/sh", USER], check=True)
        entry = pwd.getpwnam(USER)
    subprocess.run(["chpasswd"], input=f"{USER}:{password}".encode(), check=True)
    return entry


def _lock_user() -> None:
    subprocess.run(["usermod", "--lock", USER], check=False)


def _preflight() -> None:
    if not Path(SSHD).exists():
        service_missing("OpenSSH server", FileNotFoundError(f"{SSHD} (apt-get install openssh-server)"))
    if os.geteuid() != 0:
        service_missing("OpenSSH server", PermissionError("the sshd fixture needs root to log a test user in"))


@contextmanager
def ssh_cluster(nodes: tuple[str, ...] = ("pve1", "pve2")) -> Iterator[SshCluster]:
    """sshd per node, started; stopped and the test account locked again afterwards."""
    _preflight()
    password = secrets.token_urlsafe(18)
    user = _ensure_user(password)
    # not under pytest's tmp_path: pytest sets /tmp/pytest-of-<user> back to 0700 whenever a session starts (another
    # run on the machine, say), which would shut the test account out mid-test
    root = Path(tempfile.mkdtemp(prefix="pvebot-sshnodes-"))
    root.chmod(0o711)
    (root / "priv").mkdir(parents=True)
    (root / "bin").mkdir()
    # sshd drops privileges into this directory before authentication
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    cluster = SshCluster(root=root, password=password)
    cluster.keys_file.write_text("")
    apt = root / "bin" / "apt-get"
    apt.write_text(APT_GET.format(root=root))
    apt.chmod(0o755)
    # the node runs the kernel it has installed; the stand-in apt-get installs a newer one
    (root / "boot").mkdir()
    (root / "boot" / f"vmlinuz-{RUNNING_KERNEL}").write_text("")
    uname = root / "bin" / "uname"
    uname.write_text(UNAME.format(release=RUNNING_KERNEL))
    uname.chmod(0o755)
    for path in (root, root / "priv", root / "bin", root / "boot", cluster.keys_file):
        os.chown(path, user.pw_uid, user.pw_gid)
    cluster.keys_file.chmod(0o600)
    for name in nodes:
        key_path = root / f"host_{name}"
        host_key = _host_key(key_path)
        config = root / f"sshd_{name}.conf"
        config.write_text("\n".join((
            "ListenAddress 127.0.0.1",
            f"HostKey {key_path}",
            f"PidFile {root / f'sshd_{name}.pid'}",
            f"AuthorizedKeysFile {cluster.keys_file}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # the shared directory is a temporary one, not in a home directory
            "StrictModes no",
            "PermitRootLogin no",
            f"AllowUsers {USER}",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            f"SetEnv PATH={root / 'bin'}:/usr/bin:/bin PVEBOT_NODE_ROOT={root}",
            "LogLevel VERBOSE",
        )) + "\n")
        server = SshNodeServer(name=name, port=_free_port(), host_key=host_key, key_path=key_path, config=config,
                               log=root / f"sshd_{name}.log")
        cluster.nodes[name] = server
    try:
        for server in cluster.nodes.values():
            _start(server)
        yield cluster
    finally:
        for server in cluster.nodes.values():
            _stop(server)
        _lock_user()
        shutil.rmtree(root, ignore_errors=True)
