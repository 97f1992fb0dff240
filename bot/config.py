"""Settings from environment variables and an optional ``.env`` file.

A bad or missing setting raises :class:`SettingsError` naming the variable; the CLI prints
that one line and exits, never a traceback.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values


class SettingsError(Exception):
    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


def cannot_listen(host: str, port: int, error: OSError, *, port_settings: tuple[str, ...],
                  host_settings: tuple[str, ...]) -> SettingsError:
    """A port taken, an address this machine does not have or a host name that does not resolve: a
    setting to change, said in a line that names the first of the settings (variables or flags) that
    choose it and offers them all."""
    if isinstance(error, socket.gaierror):  # a host name that does not resolve: its errno is the resolver's
        reason = str(error.strerror)
    else:  # asyncio's own text repeats the address: the system's words for the errno alone
        reason = os.strerror(error.errno) if error.errno else str(error)
    reason = reason.lower()
    where = f"cannot listen on {host}:{port}: {reason}"
    if error.errno == errno.EADDRINUSE:
        return SettingsError(port_settings[0], f"{where}; choose another port ({' or '.join(port_settings)})")
    return SettingsError(host_settings[0],
                         f"{where}; choose an address of this machine ({' or '.join(host_settings)})")


def _default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "pvebot"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    redis_url: str | None
    secret_keys: tuple[str, ...] = field(repr=False)
    log_level: str = "INFO"
    log_format: str = "text"
    http_host: str = "127.0.0.1"
    http_port: int = 3000
    queue_name: str = "pvebot"
    job_timeout: int = 1800
    embedded_workers: int = 2
    job_stale_seconds: int = 60
    job_start_timeout: int = 600
    # the oldest inventory a command may be answered from; a background refresh starts at half of it
    inventory_max_age: int = 5
    shutdown_grace: int = 25
    # SSH to clusters: clusters worked on at once, seconds per connect/command, seconds between periodic checks
    ssh_parallel: int = 4
    ssh_timeout: int = 10
    cluster_check_interval: int = 3600
    # how often each cluster's backup runs are pulled from its task history (one process per cluster)
    events_poll_seconds: int = 60
    # how often pvebot's --vms backup jobs are narrowed to their company's own guests (0: never)
    schedule_check_seconds: int = 300
    # how long a sender holds the notifications it is sending; a dead sender's pass to another after it
    notify_lease_seconds: int = 60
    # commands one chat identity may send per window of seconds (shared through Redis when it is set)
    rate_limit: int = 30
    rate_window: int = 10
    # Slack
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_app_token: str | None = field(default=None, repr=False)
    slack_api_url: str | None = None
    # Teams
    microsoft_app_id: str | None = None
    microsoft_app_password: str | None = field(default=None, repr=False)
    microsoft_app_tenant_id: str | None = None
    teams_openid_metadata_url: str | None = None
    teams_login_url: str | None = None
    # serve /api/messages with no app id, i.e. unauthenticated: for the Bot Framework Emulator only
    teams_emulator: bool = False
    # Microsoft Graph (Teams members' groups and emails); unset: the public cloud's
    graph_url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def embedded_queue(self) -> bool:
        return self.redis_url is None

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value among the settings, for the log formatter's last-resort redaction."""
        values = (*self.secret_keys, self.slack_bot_token, self.slack_signing_secret, self.slack_app_token,
                  self.microsoft_app_password)
        return tuple(v for v in values if v)

    def require_secret_keys(self) -> tuple[str, ...]:
        if not self.secret_keys:
            raise SettingsError("PVEBOT_SECRET_KEY", "is not set; create one with 'pvebot admin gen-key'")
        return self.secret_keys

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")) -> Settings:
        """Read settings; real environment variables win over the ``.env`` file."""
        env: dict[str, str] = {}
        if dotenv is not None and dotenv.is_file():
            env.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
        env.update(os.environ if environ is None else environ)
        return cls.from_mapping(env)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        def integer(name: str, default: int, low: int, high: int) -> int:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = int(raw)
            except ValueError:
                raise SettingsError(name, f"must be a whole number, got '{raw[:20]}'") from None
            if not low <= value <= high:
                raise SettingsError(name, f"must be between {low} and {high}")
            return value

        data_dir = Path(get("PVEBOT_DATA_DIR") or _default_data_dir(env)).expanduser()
        database_url = get("PVEBOT_DATABASE_URL") or f"sqlite:///{data_dir / 'pvebot.db'}"
        if not database_url.startswith(("sqlite:", "mysql+pymysql:", "mariadb+pymysql:")):
            raise SettingsError("PVEBOT_DATABASE_URL", "use sqlite:///PATH or mysql+pymysql://USER:PASS@HOST/DB")
        redis_url = get("PVEBOT_REDIS_URL")
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("PVEBOT_REDIS_URL", "use redis://HOST:PORT/DB")
        keys = tuple(k.strip() for k in (get("PVEBOT_SECRET_KEY") or "").split(",") if k.strip())
        graph_url = get("PVEBOT_GRAPH_URL")
        if graph_url is not None and not graph_url.startswith("https://"):
            # it receives app tokens for the directory: never over plain HTTP
            raise SettingsError("PVEBOT_GRAPH_URL", "use https://HOST, e.g. https://graph.microsoft.us")
        level = (get("PVEBOT_LOG_LEVEL") or "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError("PVEBOT_LOG_LEVEL", "use DEBUG, INFO, WARNING or ERROR")
        log_format = (get("PVEBOT_LOG_FORMAT") or "text").lower()
        if log_format not in {"text", "json"}:
            raise SettingsError("PVEBOT_LOG_FORMAT", "use text or json")
        return cls(
            data_dir=data_dir,
            database_url=database_url,
            redis_url=redis_url,
            secret_keys=keys,
            log_level=level,
            log_format=log_format,
            http_host=get("PVEBOT_HTTP_HOST") or "127.0.0.1",
            http_port=integer("PVEBOT_HTTP_PORT", 3000, 1, 65535),
            queue_name=get("PVEBOT_QUEUE") or "pvebot",
            job_timeout=integer("PVEBOT_JOB_TIMEOUT", 1800, 10, 86400),
            embedded_workers=integer("PVEBOT_EMBEDDED_WORKERS", 2, 1, 32),
            job_stale_seconds=integer("PVEBOT_JOB_STALE_SECONDS", 60, 2, 3600),
            job_start_timeout=integer("PVEBOT_JOB_START_TIMEOUT", 600, 5, 86400),
            inventory_max_age=integer("PVEBOT_INVENTORY_MAX_AGE", 5, 1, 600),
            shutdown_grace=integer("PVEBOT_SHUTDOWN_GRACE", 25, 1, 3600),
            ssh_parallel=integer("PVEBOT_SSH_PARALLEL", 4, 1, 64),
            ssh_timeout=integer("PVEBOT_SSH_TIMEOUT", 10, 1, 120),
            cluster_check_interval=integer("PVEBOT_CLUSTER_CHECK_INTERVAL", 3600, 0, 86400),
            events_poll_seconds=integer("PVEBOT_EVENTS_POLL_SECONDS", 60, 1, 3600),
            schedule_check_seconds=integer("PVEBOT_SCHEDULE_CHECK_SECONDS", 300, 0, 86400),
            notify_lease_seconds=integer("PVEBOT_NOTIFY_LEASE_SECONDS", 60, 2, 3600),
            rate_limit=integer("PVEBOT_RATE_LIMIT", 30, 1, 100_000),
            rate_window=integer("PVEBOT_RATE_WINDOW", 10, 1, 86400),
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_signing_secret=get("SLACK_SIGNING_SECRET"),
            slack_app_token=get("SLACK_APP_TOKEN"),
            slack_api_url=get("PVEBOT_SLACK_API_URL"),
            microsoft_app_id=get("MICROSOFT_APP_ID"),
            microsoft_app_password=get("MICROSOFT_APP_PASSWORD"),
            microsoft_app_tenant_id=get("MICROSOFT_APP_TENANT_ID"),
            teams_openid_metadata_url=get("PVEBOT_TEAMS_OPENID_METADATA_URL"),
            teams_login_url=get("PVEBOT_TEAMS_LOGIN_URL"),
            teams_emulator=(get("PVEBOT_TEAMS_EMULATOR") or "").lower() in {"1", "true", "yes", "on"},
            graph_url=graph_url,
            env=dict(env),
        )


# (variable, default, meaning) — the README's configuration table is generated from this list
DOCUMENTED: tuple[tuple[str, str, str], ...] = (
    ("PVEBOT_DATA_DIR", "~/.local/share/pvebot", "where the embedded SQLite database lives; created on first use"),
    ("PVEBOT_DATABASE_URL", "sqlite:///$PVEBOT_DATA_DIR/pvebot.db", "`mysql+pymysql://user:pw@host/db` for production"),
    ("PVEBOT_REDIS_URL", "(unset)", "unset: jobs run on in-process RQ workers; set: on Redis and `pvebot worker`"),
    ("PVEBOT_SECRET_KEY", "(required)", "Fernet key(s) for secrets at rest, comma-separated, first encrypts"),
    ("PVEBOT_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    ("PVEBOT_LOG_FORMAT", "text", "`json`: one JSON object a line with request id, job id, company and user"),
    ("PVEBOT_HTTP_HOST", "127.0.0.1", "address `pvebot serve` listens on; `--host` wins"),
    ("PVEBOT_HTTP_PORT", "3000", "port `pvebot serve` listens on; `--port` wins"),
    ("PVEBOT_QUEUE", "pvebot", "RQ queue name"),
    ("PVEBOT_JOB_TIMEOUT", "1800", "seconds before a job is given up and reported failed"),
    ("PVEBOT_EMBEDDED_WORKERS", "2", "worker threads of the embedded queue"),
    ("PVEBOT_JOB_STALE_SECONDS", "60", "a running job silent this long lost its worker: reported as outcome unknown"),
    ("PVEBOT_JOB_START_TIMEOUT", "600", "a queued job no worker took within this many seconds is reported failed"),
    ("PVEBOT_INVENTORY_MAX_AGE", "5", "seconds a cluster's cached guest list may be old; refreshed in the "
                                      "background from half of that"),
    ("PVEBOT_SHUTDOWN_GRACE", "25", "seconds `pvebot serve` gives requests in flight, and the posts they owe, "
                                    "after SIGTERM"),
    ("PVEBOT_SSH_PARALLEL", "4", "clusters the `--all` SSH checks work on at once"),
    ("PVEBOT_SSH_TIMEOUT", "10", "seconds for each SSH connect, banner, login and channel; a command gets 3× that"),
    ("PVEBOT_CLUSTER_CHECK_INTERVAL", "3600", "seconds between the maintenance loop's updates and SSH key health "
                                              "checks; 0 turns them off"),
    ("PVEBOT_EVENTS_POLL_SECONDS", "60", "seconds between pulls of each cluster's backup runs from its task "
                                         "history (one process polls a cluster at a time)"),
    ("PVEBOT_SCHEDULE_CHECK_SECONDS", "300", "seconds between passes that remove from each `--vms` backup schedule "
                                             "the VMIDs no longer in its company's pools (one process per "
                                             "cluster); 0 turns them off"),
    ("PVEBOT_NOTIFY_LEASE_SECONDS", "60", "seconds a process holds the notifications it is sending; those of a "
                                          "process that died are sent by another after this"),
    ("PVEBOT_RATE_LIMIT", "30", "commands one chat identity may send per `PVEBOT_RATE_WINDOW`; more are refused "
                                "before any directory look-up"),
    ("PVEBOT_RATE_WINDOW", "10", "seconds of the command rate limit's window"),
    ("SLACK_BOT_TOKEN", "(unset)", "Slack bot token `xoxb-…`"),
    ("SLACK_SIGNING_SECRET", "(unset)", "Slack signing secret (HTTP mode)"),
    ("SLACK_APP_TOKEN", "(unset)", "Slack app-level token `xapp-…`: Socket Mode"),
    ("PVEBOT_SLACK_API_URL", "https://slack.com/api/", "Slack Web API base URL (proxies, tests)"),
    ("MICROSOFT_APP_ID", "(unset)", "Bot Framework app id; unset turns Teams auth off (emulator only)"),
    ("MICROSOFT_APP_PASSWORD", "(unset)", "Bot Framework app secret"),
    ("MICROSOFT_APP_TENANT_ID", "(unset)", "Azure AD tenant of a single-tenant app registration"),
    ("PVEBOT_TEAMS_OPENID_METADATA_URL", "Bot Framework's", "OpenID metadata URL (sovereign clouds, tests)"),
    ("PVEBOT_TEAMS_LOGIN_URL", "Azure AD's", "Azure AD host for app tokens (sovereign clouds, tests)"),
    ("PVEBOT_TEAMS_EMULATOR", "(unset)", "`1`: Teams with no app id and no authentication (Emulator only)"),
    ("PVEBOT_GRAPH_URL", "https://graph.microsoft.com", "Microsoft Graph for Teams members' groups and emails "
                                                       "(sovereign clouds, tests)"),
)
