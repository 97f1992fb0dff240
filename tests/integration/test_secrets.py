"""Secrets at rest: key rotation through ``pvebot admin rotate-key``, wrong keys, and no leaks.

Every cluster's token secret must stay readable across a rotation; a wrong key is one clear
line and an exit code, never a traceback, and leaves the database as it was. The secret's
value never shows in export output, the audit trail, logs or reprs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.crypto import FernetCipher, generate_key
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from bot import cli
from bot.config import Settings
from core.errors import ConfigurationError
from core.principal import Scope
from tests.support import TOKEN_ENV

FINGERPRINT = ":".join(["A1"] * 32)
TWO_CLUSTERS = f"""\
clusters:
  - name: lab
    api_urls: [https://10.0.0.11:8006]
    token_id: "pvebot@pve!bot"
    token_secret_env: PVE_LAB_TOKEN
    tls: {{verify: false}}
  - name: edge
    api_urls: [https://10.0.0.21:8006]
    token_id: "pvebot@pve!edge"
    token_secret_env: PVE_EDGE_TOKEN
    tls: {{fingerprint: "{FINGERPRINT}"}}
"""
SECRETS = {"lab": TOKEN_ENV["PVE_LAB_TOKEN"], "edge": TOKEN_ENV["PVE_EDGE_TOKEN"]}


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@dataclass
class Env:
    run: Callable[..., Run]
    monkeypatch: pytest.MonkeyPatch
    factory: SqlUnitOfWorkFactory
    file: Path
    key: str

    def use_key(self, key: str) -> None:
        self.monkeypatch.setenv("PVEBOT_SECRET_KEY", key)

    def tokens(self) -> dict[str, str]:
        with self.factory(Scope.everything()) as uow:
            return {c.name: c.token_secret_encrypted for c in uow.clusters.list()}

    def plaintexts(self, *keys: str) -> dict[str, str]:
        cipher = FernetCipher(list(keys))
        return {name: cipher.decrypt(token) for name, token in self.tokens().items()}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        db_url: str) -> Iterator[Env]:
    """Two clusters provisioned through the CLI under a first key."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("PVEBOT_", "PVE_", "SLACK_", "MICROSOFT_")):
            monkeypatch.delenv(name)
    key = generate_key()
    monkeypatch.setenv("PVEBOT_DATABASE_URL", db_url)
    monkeypatch.setenv("PVEBOT_SECRET_KEY", key)
    for name, value in TOKEN_ENV.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> Run:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    assert run("db", "upgrade").code == 0
    file = tmp_path / "clusters.yaml"
    file.write_text(TWO_CLUSTERS)
    assert run("admin", "apply", str(file)).code == 0
    engine = make_engine(db_url)
    yield Env(run=run, monkeypatch=monkeypatch, factory=SqlUnitOfWorkFactory(engine), file=file, key=key)
    engine.dispose()


def _one_line(result: Run, code: int) -> str:
    assert result.code == code, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    return lines[0]


def test_rotation_keeps_every_secret_readable_under_the_new_key(env: Env) -> None:
    assert env.plaintexts(env.key) == SECRETS
    new_key = generate_key()
    result = env.run("admin", "rotate-key", f"--new-key={new_key}")
    assert result.code == 0
    assert result.out == new_key + "\n"  # stdout holds only the key, for scripts
    assert result.err == "re-encrypted 2 secret(s). Set PVEBOT_SECRET_KEY to the new key now:\n"
    assert env.plaintexts(new_key) == SECRETS
    with pytest.raises(ConfigurationError):
        env.plaintexts(env.key)  # the old key alone no longer reads them
    # pvebot itself, with the new key set, reads every secret: re-applying compares each one
    env.use_key(new_key)
    assert env.run("admin", "apply", str(env.file)).out == "no change\n"


def test_rotation_generates_a_key_when_none_is_given(env: Env) -> None:
    result = env.run("admin", "rotate-key")
    assert result.code == 0
    new_key = result.out.strip()
    assert new_key != env.key
    assert env.plaintexts(new_key) == SECRETS


def test_rotation_can_be_repeated(env: Env) -> None:
    second, third = generate_key(), generate_key()
    assert env.run("admin", "rotate-key", f"--new-key={second}").code == 0
    env.use_key(second)
    assert env.run("admin", "rotate-key", f"--new-key={third}").code == 0
    assert env.plaintexts(third) == SECRETS


def test_a_keyring_reads_old_and_new_during_the_switch(env: Env) -> None:
    new_key = generate_key()
    env.use_key(f"{new_key},{env.key}")  # new first: it encrypts; the old one still decrypts
    assert env.run("admin", "apply", str(env.file)).out == "no change\n"
    assert env.run("admin", "rotate-key", f"--new-key={new_key}").code == 0
    assert env.plaintexts(new_key) == SECRETS


def test_rotation_is_audited_without_secrets(env: Env) -> None:
    new_key = generate_key()
    assert env.run("admin", "rotate-key", f"--new-key={new_key}").code == 0
    trail = env.run("admin", "audit").out
    assert "cli secrets.rotated [ok] count=2" in trail
    for secret in (new_key, env.key, *SECRETS.values()):
        assert secret not in trail


def test_a_wrong_key_is_one_clear_line_and_changes_nothing(env: Env) -> None:
    before = env.tokens()
    env.use_key(generate_key())
    result = env.run("admin", "rotate-key", f"--new-key={generate_key()}")
    assert _one_line(result, 1) == (
        "pvebot: a stored secret cannot be decrypted with PVEBOT_SECRET_KEY: wrong key, or rotated without it")
    assert result.out == ""
    assert env.tokens() == before
    # applying under the wrong key fails alike instead of overwriting the secret
    assert _one_line(env.run("admin", "apply", str(env.file)), 1).startswith("pvebot: a stored secret cannot be")
    assert env.tokens() == before


def test_a_malformed_key_is_named_and_not_echoed(env: Env) -> None:
    env.use_key("not-a-fernet-key")
    line = _one_line(env.run("admin", "rotate-key"), 2)
    assert line == "pvebot: PVEBOT_SECRET_KEY: is not a valid key (expected 32 url-safe base64 bytes)"
    assert "not-a-fernet-key" not in line


def test_a_malformed_new_key_changes_nothing(env: Env) -> None:
    before = env.tokens()
    line = _one_line(env.run("admin", "rotate-key", "--new-key=short"), 1)
    assert line == "pvebot: --new-key is not a valid key (expected 32 url-safe base64 bytes)"
    assert env.tokens() == before


def test_secrets_never_show_in_export_logs_or_reprs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.monkeypatch.setenv("PVEBOT_LOG_LEVEL", "DEBUG")
    caplog.set_level(logging.DEBUG)
    exported = env.run("admin", "export")
    applied = env.run("admin", "apply", str(env.file))
    rotated = env.run("admin", "rotate-key", f"--new-key={generate_key()}")
    shown = exported.out + exported.err + applied.out + applied.err + rotated.err + caplog.text
    with env.factory(Scope.everything()) as uow:
        clusters = uow.clusters.list()
    settings = Settings.load()
    shown += repr(clusters) + repr(settings) + repr(FernetCipher([env.key]))
    encrypted = [c.token_secret_encrypted for c in clusters]
    for secret in (*SECRETS.values(), env.key, *encrypted):
        assert secret not in shown
    assert "token_secret_env: PVE_LAB_TOKEN" in exported.out
