"""Teams auth at our edge: Bot Framework JWTs from a locally issued key; every failure is 401, never 500."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.teams_support import APP_PASSWORD, TeamsBot, message, running_bot


@pytest.fixture
async def bot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[TeamsBot]:
    async with running_bot(tmp_path, monkeypatch) as running:
        yield running


async def test_valid_token_is_accepted(bot: TeamsBot) -> None:
    status, _ = await bot.post(message(bot.fake, "whoami"))
    assert status == 200
    assert len(bot.fake.activities("POST")) == 1


@pytest.mark.parametrize("case", ["missing", "expired", "wrong audience", "wrong serviceurl", "other key",
                                  "unknown key id", "garbage", "wrong scheme", "wrong issuer"])
async def test_bad_tokens_are_401(bot: TeamsBot, case: str, caplog: pytest.LogCaptureFixture) -> None:
    activity = message(bot.fake, "whoami")
    fake = bot.fake
    token: str | None = {
        "missing": lambda: None,
        "expired": lambda: fake.issue(expires_in=-3600),  # beyond botbuilder's 5 minutes of leeway
        "wrong audience": lambda: fake.issue(audience="someone-elses-app"),
        "wrong serviceurl": lambda: fake.issue(service_url="https://smba.evil.example/amer/"),
        "other key": lambda: fake.issue(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "unknown key id": lambda: fake.issue(kid="nope"),
        "garbage": lambda: "not-a-jwt",
        "wrong scheme": lambda: None,
        "wrong issuer": lambda: fake.issue(iss="https://sts.windows.net/evil/"),
    }[case]()
    headers = {"Authorization": f"Basic {fake.issue()}"} if case == "wrong scheme" else None
    with caplog.at_level(logging.DEBUG):
        status, _ = await bot.post(activity, token=token, headers=headers)
    assert status == 401
    assert bot.fake.activities() == []
    assert APP_PASSWORD not in caplog.text and (token is None or token not in caplog.text)


async def test_not_json_is_rejected_before_auth(bot: TeamsBot) -> None:
    status, _ = await bot.post("not an activity", token=None)  # type: ignore[arg-type]
    assert status == 400


async def test_no_app_id_serves_the_emulator_without_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pvebot.teams"):
        async with running_bot(tmp_path, monkeypatch, auth=False) as emulator:
            status, _ = await emulator.post(message(emulator.fake, "whoami"), token=None)
            assert status == 200
            [reply] = emulator.fake.activities("POST")
            assert reply.authorization is None
    assert "TEAMS AUTHENTICATION IS OFF" in caplog.text
