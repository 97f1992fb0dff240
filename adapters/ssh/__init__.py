"""SSH to cluster nodes: paramiko behind :class:`core.ports.RemoteShell`, and pvebot's Ed25519 keys."""
