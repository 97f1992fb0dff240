"""Secrets at rest: re-encryption under a new key."""

from __future__ import annotations

from core.ports import Clock, SecretCipher, UnitOfWork
from core.services import audit


def rotate(uow: UnitOfWork, *, old: SecretCipher, new: SecretCipher, clock: Clock, actor: str) -> int:
    """Re-encrypt every stored secret from ``old`` to ``new`` in ``uow`` (unscoped); the caller commits.

    Every secret is decrypted and checked under the new key before anything is committed, so
    a failure leaves the database as it was.

    Returns:
        How many secrets were re-encrypted.

    Raises:
        ConfigurationError: a secret cannot be decrypted with ``old``.
    """
    count = 0
    for cluster in uow.clusters.list():
        plaintext = old.decrypt(cluster.token_secret_encrypted)
        token = new.encrypt(plaintext)
        if new.decrypt(token) != plaintext:  # pragma: no cover - a broken cipher, not a user error
            raise RuntimeError("re-encryption check failed")
        cluster.token_secret_encrypted = token
        count += 1
        assert cluster.id is not None
        for key in uow.ssh.keys(cluster.id):  # pvebot's SSH keys on the cluster, encrypted alike
            private = old.decrypt(key.private_key_encrypted)
            sealed = new.encrypt(private)
            if new.decrypt(sealed) != private:  # pragma: no cover - a broken cipher, not a user error
                raise RuntimeError("re-encryption check failed")
            key.private_key_encrypted = sealed
        # the webhook secret pvebot installed on the cluster, if any, is kept under the same key
        source = uow.event_sources.get(cluster.id) if cluster.id is not None else None
        if source is not None and source.secret_encrypted:
            plaintext = old.decrypt(source.secret_encrypted)
            source.secret_encrypted = new.encrypt(plaintext)
            if new.decrypt(source.secret_encrypted) != plaintext:  # pragma: no cover - a broken cipher
                raise RuntimeError("re-encryption check failed")
            uow.event_sources.save(source)
            count += 1
    audit.record(uow, clock=clock, actor=actor, action="secrets.rotated", detail={"count": count})
    return count
