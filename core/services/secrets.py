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
        cluster.token_secret_encrypted = _reseal(old, new, cluster.token_secret_encrypted)
        count += 1
        assert cluster.id is not None
        for key in uow.ssh.keys(cluster.id):  # pvebot's SSH keys on the cluster, encrypted alike
            key.private_key_encrypted = _reseal(old, new, key.private_key_encrypted)
            count += 1
        # the webhook secret pvebot installed on the cluster, if any, is kept under the same key
        source = uow.event_sources.get(cluster.id)
        if source is not None and source.secret_encrypted:
            source.secret_encrypted = _reseal(old, new, source.secret_encrypted)
            uow.event_sources.save(source)
            count += 1
    audit.record(uow, clock=clock, actor=actor, action="secrets.rotated", detail={"count": count})
    return count


def _reseal(old: SecretCipher, new: SecretCipher, sealed: str) -> str:
    plaintext = old.decrypt(sealed)
    resealed = new.encrypt(plaintext)
    if new.decrypt(resealed) != plaintext:  # pragma: no cover - a broken cipher, not a user error
        raise RuntimeError("re-encryption check failed")
    return resealed
