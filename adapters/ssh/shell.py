""":class:`core.ports.RemoteShell` on paramiko, with the host key checked against its pin first.

Never the system's known_hosts, never the agent or ``~/.ssh`` keys: a node is trusted only by the
fingerprint pvebot pinned for it, through a policy that is ``RejectPolicy`` unless the key shown is
exactly the pinned one. paramiko asks the policy before it authenticates, so a changed key means
nothing at all was sent: no password, no key signature, no command.
"""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Callable

import paramiko

from core.errors import ExternalSystemError, HostKeyMismatch, HostKeyUnknown, LoginFailed
from core.ports import CommandResult, Credentials, ShellTarget

log = logging.getLogger(__name__)


class _Pinned(paramiko.RejectPolicy):
    """RejectPolicy that lets through the one key whose fingerprint is pinned."""

    def __init__(self, target: ShellTarget) -> None:
        self.target = target
        self.seen: str | None = None

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.seen = key.fingerprint
        if self.target.host_key is None:
            raise HostKeyUnknown(f"no host key is pinned for {self.target.cluster}/{self.target.node}; it shows "
                                 f"{key.fingerprint}: `cluster trust {self.target.cluster} {self.target.node} "
                                 f"{key.fingerprint}` once you have checked it on the node", seen=key.fingerprint)
        if key.fingerprint != self.target.host_key:
            raise HostKeyMismatch(
                f"🔒 security: {self.target.cluster}/{self.target.node} shows host key {key.fingerprint}, not the "
                f"pinned {self.target.host_key}; refused, nothing was sent", seen=key.fingerprint,
                pinned=self.target.host_key)


class ParamikoShell:
    """Opens one connection per call: the jobs that use it are minutes apart and short."""

    def __init__(self, *, connect_timeout: float = 10.0, keepalive: int = 30) -> None:
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive

    def host_key(self, target: ShellTarget) -> str:
        where = f"{target.cluster}/{target.node}"
        try:
            sock = socket.create_connection((target.host, target.port), timeout=self.connect_timeout)
        except OSError as e:
            raise ExternalSystemError(f"{where} does not answer on its SSH port ({type(e).__name__})") from e
        transport = paramiko.Transport(sock)
        transport.banner_timeout = self.connect_timeout
        try:
            transport.start_client(timeout=self.connect_timeout)
            return transport.get_remote_server_key().fingerprint
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ExternalSystemError(f"{where} did not complete the SSH handshake ({type(e).__name__})") from e
        finally:
            transport.close()

    def _connect(self, target: ShellTarget, credentials: Credentials) -> paramiko.SSHClient:
        where = f"{target.cluster}/{target.node}"
        client = paramiko.SSHClient()
        # deliberately no load_system_host_keys(): the pin is the only trust
        client.set_missing_host_key_policy(_Pinned(target))
        pkey = None
        if credentials.private_key:
            pkey = paramiko.Ed25519Key.from_private_key(io.StringIO(credentials.private_key))
        t = self.connect_timeout
        try:
            client.connect(target.host, port=target.port, username=target.user, pkey=pkey,
                           password=None if pkey is not None else credentials.password, allow_agent=False,
                           look_for_keys=False, timeout=t, banner_timeout=t, auth_timeout=t, channel_timeout=t)
        except (HostKeyMismatch, HostKeyUnknown):
            client.close()
            raise
        except paramiko.AuthenticationException as e:
            client.close()
            how = "pvebot's key" if pkey is not None else "the password"
            raise LoginFailed(f"{where} refused {how} for {target.user}") from e
        except (paramiko.SSHException, OSError, EOFError) as e:
            client.close()
            raise ExternalSystemError(f"{where} could not be reached over SSH ({type(e).__name__})") from e
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(self.keepalive)
        return client

    def run(self, target: ShellTarget, credentials: Credentials, command: str, *, stdin: str | None = None,
            on_line: Callable[[str], None] | None = None, timeout: float = 60.0) -> CommandResult:
        where = f"{target.cluster}/{target.node}"
        client = self._connect(target, credentials)
        lines: list[str] = []
        try:
            transport = client.get_transport()
            assert transport is not None
            channel = transport.open_session(timeout=self.connect_timeout)
            channel.set_combine_stderr(True)
            channel.settimeout(min(timeout, 30.0))
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            deadline = time.monotonic() + timeout
            pending = b""
            while True:
                if time.monotonic() > deadline:
                    raise ExternalSystemError(f"the command on {where} did not end within {timeout:.0f} s")
                try:
                    chunk = channel.recv(32768)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for raw in complete:
                    self._line(raw, lines, on_line)
            if pending:
                self._line(pending, lines, on_line)
            # the output ended; the exit status follows at once, unless the server never sends it
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                raise ExternalSystemError(f"the command on {where} did not say how it ended within {timeout:.0f} s")
            status = channel.recv_exit_status()
            if status == -1:  # paramiko's word for a channel closed with no exit status: the session went
                raise ExternalSystemError(f"the SSH session to {where} broke off before the command ended")
            return CommandResult(exit_status=status, output=tuple(lines))
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise ExternalSystemError(f"the SSH session to {where} broke off ({type(e).__name__})") from e
        finally:
            client.close()

    @staticmethod
    def _line(raw: bytes, lines: list[str], on_line: Callable[[str], None] | None) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        lines.append(line)
        if on_line is not None:
            on_line(line)
