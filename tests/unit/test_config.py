"""Settings: defaults, one clear error naming the variable, and secrets kept out of reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import DOCUMENTED, Settings, SettingsError

KEY = "x" * 43 + "="


def _error(env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        Settings.from_mapping(env)
    return caught.value


def test_defaults_are_the_embedded_setup() -> None:
    s = Settings.from_mapping({"XDG_DATA_HOME": "/srv/data"})
    assert s.data_dir == Path("/srv/data/pvebot")
    assert s.database_url == "sqlite:////srv/data/pvebot/pvebot.db"
    assert s.redis_url is None and s.embedded_queue
    assert (s.log_level, s.http_host, s.http_port, s.queue_name, s.job_timeout, s.embedded_workers) == (
        "INFO", "127.0.0.1", 3000, "pvebot", 1800, 2)
    assert s.secret_keys == ()


def test_values_are_read_and_trimmed() -> None:
    s = Settings.from_mapping({
        "PVEBOT_DATA_DIR": "/var/lib/pvebot",
        "PVEBOT_DATABASE_URL": " mysql+pymysql://bot:pw@db/pvebot ",
        "PVEBOT_REDIS_URL": "redis://redis:6379/1",
        "PVEBOT_SECRET_KEY": f" {KEY} , old{KEY[3:]} ,",
        "PVEBOT_LOG_LEVEL": "debug",
        "PVEBOT_HTTP_PORT": "8080",
        "SLACK_BOT_TOKEN": "  ",
    })
    assert s.database_url == "mysql+pymysql://bot:pw@db/pvebot"
    assert not s.embedded_queue
    assert s.secret_keys == (KEY, f"old{KEY[3:]}")
    assert (s.log_level, s.http_port) == ("DEBUG", 8080)
    assert s.slack_bot_token is None  # blank is unset


@pytest.mark.parametrize(
    ("env", "variable", "message"),
    [
        ({"PVEBOT_HTTP_PORT": "http"}, "PVEBOT_HTTP_PORT", "must be a whole number, got 'http'"),
        ({"PVEBOT_HTTP_PORT": "70000"}, "PVEBOT_HTTP_PORT", "must be between 1 and 65535"),
        ({"PVEBOT_JOB_TIMEOUT": "5"}, "PVEBOT_JOB_TIMEOUT", "must be between 10 and 86400"),
        ({"PVEBOT_EMBEDDED_WORKERS": "0"}, "PVEBOT_EMBEDDED_WORKERS", "must be between 1 and 32"),
        ({"PVEBOT_DATABASE_URL": "postgresql://db/x"}, "PVEBOT_DATABASE_URL", "use sqlite:///PATH"),
        ({"PVEBOT_REDIS_URL": "localhost:6379"}, "PVEBOT_REDIS_URL", "use redis://HOST:PORT/DB"),
        ({"PVEBOT_LOG_LEVEL": "loud"}, "PVEBOT_LOG_LEVEL", "use DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_a_bad_setting_names_its_variable_in_one_line(env: dict[str, str], variable: str, message: str) -> None:
    error = _error(env)
    assert error.variable == variable
    text = str(error)
    assert text.startswith(f"{variable}: ") and message in text
    assert "\n" not in text


def test_a_missing_secret_key_is_reported_when_needed() -> None:
    settings = Settings.from_mapping({})
    with pytest.raises(SettingsError) as caught:
        settings.require_secret_keys()
    assert str(caught.value) == "PVEBOT_SECRET_KEY: is not set; create one with 'pvebot admin gen-key'"
    assert Settings.from_mapping({"PVEBOT_SECRET_KEY": KEY}).require_secret_keys() == (KEY,)


def test_a_bad_number_is_not_echoed_at_length() -> None:
    assert "x" * 21 not in str(_error({"PVEBOT_HTTP_PORT": "x" * 500}))


def test_secrets_stay_out_of_repr() -> None:
    s = Settings.from_mapping({"PVEBOT_SECRET_KEY": KEY, "SLACK_BOT_TOKEN": "xoxb-secret-token",
                               "SLACK_SIGNING_SECRET": "signing-secret", "MICROSOFT_APP_PASSWORD": "app-password",
                               "PVE_LAB_TOKEN": "lab-token-secret"})
    shown = repr(s)
    for secret in (KEY, "xoxb-secret-token", "signing-secret", "app-password", "lab-token-secret"):
        assert secret not in shown


def test_dotenv_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("PVEBOT_HTTP_PORT=4000\nPVEBOT_QUEUE=from-file\nPVE_LAB_TOKEN=abc\n")
    s = Settings.load({"PVEBOT_HTTP_PORT": "5000"}, dotenv=dotenv)
    assert (s.http_port, s.queue_name) == (5000, "from-file")
    assert s.env["PVE_LAB_TOKEN"] == "abc"  # provisioning reads token secrets from here
    assert Settings.load({}, dotenv=tmp_path / "missing.env").queue_name == "pvebot"


def test_every_documented_variable_is_unique() -> None:
    names = [name for name, _, _ in DOCUMENTED]
    assert len(names) == len(set(names))


def test_the_graph_url_is_https_and_teams_defaults_to_the_public_cloud() -> None:
    from adapters.teams.setup import config_of

    assert config_of(Settings.from_mapping({})).graph_url == "https://graph.microsoft.com"
    us = Settings.from_mapping({"PVEBOT_GRAPH_URL": " https://graph.microsoft.us "})
    assert config_of(us).graph_url == "https://graph.microsoft.us"
    error = _error({"PVEBOT_GRAPH_URL": "http://graph.example"})
    assert str(error) == "PVEBOT_GRAPH_URL: use https://HOST, e.g. https://graph.microsoft.us"
