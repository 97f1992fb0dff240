"""Secrets at rest: Fernet tokens under a MultiFernet keyring.

Fernet is AES-128-CBC with HMAC-SHA256 and a timestamp, from ``cryptography``; MultiFernet
decrypts with any key of the ring and encrypts with the first, which is what key rotation
needs: ``pvebot admin rotate-key`` puts the new key first, re-encrypts every secret, and
the old key can then be dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from core.errors import ConfigurationError


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def _fernet(key: str, *, name: str) -> Fernet:
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as e:
        # the key itself is never echoed, only which setting holds it
        raise ConfigurationError(f"{name} is not a valid key (expected 32 url-safe base64 bytes)") from e


class FernetCipher:
    """:class:`core.ports.SecretCipher` over one or more Fernet keys (the first encrypts)."""

    def __init__(self, keys: Sequence[str], *, setting_name: str = "PVEBOT_SECRET_KEY") -> None:
        if not keys:
            raise ConfigurationError(f"{setting_name} is not set")
        self._setting_name = setting_name
        self._ring = MultiFernet([_fernet(k, name=setting_name) for k in keys])

    def __repr__(self) -> str:
        return "FernetCipher(<keys hidden>)"

    def encrypt(self, plaintext: str) -> str:
        return self._ring.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._ring.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as e:
            raise ConfigurationError(
                f"a stored secret cannot be decrypted with {self._setting_name}: wrong key, or rotated without it"
            ) from e

    def rotate(self, token: str) -> str:
        """Re-encrypt ``token`` under the first key."""
        try:
            return self._ring.rotate(token.encode("ascii")).decode("ascii")
        except InvalidToken as e:
            raise ConfigurationError(
                f"a stored secret cannot be decrypted with {self._setting_name}: wrong key"
            ) from e
