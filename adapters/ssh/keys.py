"""pvebot's SSH keys: Ed25519 pairs made with ``cryptography`` (paramiko's Ed25519Key cannot generate)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat


def fingerprint_of(public_line: str) -> str:
    """``SHA256:…`` of an OpenSSH public line, as ``ssh-keygen -l`` prints it."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class Ed25519KeyMaker:
    """:class:`core.ports.KeyMaker` for Ed25519 keys."""

    def generate(self) -> tuple[str, str, str]:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()).decode()
        public = key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
        return private, public, fingerprint_of(public)
