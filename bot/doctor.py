"""``pvebot doctor``: probe every dependency from the settings and report one line each.

The probes never raise: each failure becomes a ❌ line with its fix. Driver errors carry URLs
with passwords and tokens, so a line names only the kind of failure (the exception's class), and
secrets are never part of what is printed. Each cluster whose API answers also gets a line for its
Proxmox event hook and one per SSH node (a real login with pvebot's key, as ``cluster keys health``
does, which records what it found the same way).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from bot.config import Settings
from core.services.doctor import Check, Status

log = logging.getLogger(__name__)

MANIFEST = Path(__file__).resolve().parents[1] / "adapters" / "slack" / "manifest.yml"


def check_database(settings: Settings) -> tuple[list[Check], Any]:
    """The database answers and its schema is at the migration head; returns the engine when it answers."""
    from adapters.sql import migrate
    from adapters.sql.uow import make_engine

    name = "database"
    url = settings.database_url
    embedded = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else ""
    if embedded and embedded != ":memory:" and not Path(embedded).expanduser().exists():
        # the first run's state, not a fault: pvebot creates and migrates its embedded database when it
        # starts, and a probe that connected would leave an empty file behind (or fail on a missing folder)
        return [Check(name, Status.OK, f"embedded SQLite {embedded} does not exist yet: pvebot creates it when it "
                                       "first starts (or run 'pvebot db upgrade')")], None
    try:
        engine = make_engine(settings.database_url)
        current = migrate.current_revision(engine)
    except Exception as e:
        return [Check(name, Status.FAIL, f"does not answer ({type(e).__name__})",
                      "check PVEBOT_DATABASE_URL, that the server runs and that the user may connect")], None
    head = migrate.head_revision()
    if current == head:
        return [Check(name, Status.OK, f"{engine.dialect.name} answers, schema at the migration head ({head})")], engine
    behind = "empty (no schema yet)" if current is None else f"at revision {current}, behind the head {head}"
    return [Check(name, Status.FAIL, f"{engine.dialect.name} answers, but the schema is {behind}",
                  "run 'pvebot db upgrade'")], engine


def check_queue(settings: Settings) -> list[Check]:
    """Redis answers and at least one worker listens on the queue."""
    if settings.redis_url is None:
        return [Check("queue", Status.OK, "embedded (in-process RQ workers): fine for one machine",
                      "set PVEBOT_REDIS_URL and run 'pvebot worker' to spread jobs over machines")]
    from redis import Redis, RedisError
    from rq import Queue, Worker

    connection = Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        connection.ping()
        workers = Worker.all(queue=Queue(settings.queue_name, connection=connection))
        depth = Queue(settings.queue_name, connection=connection).count
    except RedisError as e:
        return [Check("redis", Status.FAIL, f"does not answer ({type(e).__name__})",
                      "check PVEBOT_REDIS_URL and that Redis runs")]
    finally:
        connection.close()
    checks = [Check("redis", Status.OK, f"answers; queue {settings.queue_name} holds {depth} job(s)")]
    if workers:
        checks.append(Check("workers", Status.OK, f"{len(workers)} worker(s) on queue {settings.queue_name}"))
    else:
        checks.append(Check("workers", Status.FAIL, f"no worker listens on queue {settings.queue_name}: jobs wait",
                            "start 'pvebot worker' (deploy/systemd/pvebot-worker@.service)"))
    return checks


def check_clusters(settings: Settings, engine: Any) -> list[Check]:
    """Every provisioned cluster: each API URL, the pin, the token and what its privileges allow."""
    from adapters.crypto import FernetCipher
    from adapters.proxmox.probe import probe_cluster
    from adapters.sql.uow import SqlUnitOfWorkFactory
    from core.principal import Scope

    if not settings.secret_keys:
        return [Check("clusters", Status.FAIL, "PVEBOT_SECRET_KEY is not set: the tokens cannot be read",
                      "set PVEBOT_SECRET_KEY to the key the provisioning was applied with")]
    try:
        cipher = FernetCipher(list(settings.secret_keys))
    except Exception:
        return [Check("clusters", Status.FAIL, "PVEBOT_SECRET_KEY is not a valid key",
                      "use the key printed by 'pvebot admin gen-key'")]
    try:
        with SqlUnitOfWorkFactory(engine)(Scope.everything()) as uow:
            clusters = uow.clusters.list()
            bindings = uow.pool_bindings.list()
    except Exception as e:
        return [Check("clusters", Status.FAIL, f"cannot be read from the database ({type(e).__name__})",
                      "run 'pvebot db upgrade'")]
    if not clusters:
        return [Check("clusters", Status.WARN, "none provisioned", "add them with 'pvebot admin apply FILE'")]
    from bot.bootstrap import doctor_deps

    deps = doctor_deps(settings, engine=engine, cipher=cipher)
    checks: list[Check] = []
    try:
        for cluster in clusters:
            pools = [b.pool for b in bindings if b.cluster_id == cluster.id]
            probed = probe_cluster(cluster, cipher=cipher, pools=pools)
            checks.extend(probed)
            if any(c.name.startswith(f"cluster {cluster.name}: API URL") and c.status is not Status.FAIL
                   for c in probed):
                checks.extend(_event_hook(deps, cluster))
            checks.extend(_ssh(deps, cluster))
    finally:
        deps.hypervisors.close()  # type: ignore[attr-defined]
    return checks


def _event_hook(deps: Any, cluster: Any) -> list[Check]:
    from core.errors import BotError
    from core.services import webhooks
    from core.services.doctor import event_hook_checks

    try:
        status = webhooks.status(deps.uow_factory, cluster_name=cluster.name,
                                 target=deps.hypervisors.for_cluster(cluster))
    except BotError as e:
        return [Check(f"cluster {cluster.name}: event hook", Status.WARN, f"cannot be read ({e.user_message})",
                      "the token needs Mapping.Audit on /mapping/notifications to read it")]
    return event_hook_checks(status)


def _ssh(deps: Any, cluster: Any) -> list[Check]:
    from core.services import key_operations
    from core.services.doctor import ssh_checks

    try:
        return ssh_checks(cluster.name, key_operations.check_cluster(deps, cluster))
    except Exception as e:
        log.warning("doctor: the SSH check of cluster %s failed", cluster.name, exc_info=True)
        return [Check(f"cluster {cluster.name}: SSH", Status.FAIL, f"the check failed ({type(e).__name__})",
                      "see the log of this run; 'cluster keys health' in chat checks it again")]


def manifest_scopes() -> set[str]:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return set(manifest["oauth_config"]["scopes"]["bot"])


def check_slack(settings: Settings) -> list[Check]:
    """The bot token works and holds the scopes the manifest asks for."""
    if settings.slack_bot_token is None:
        return [Check("slack", Status.OK, "not configured (SLACK_BOT_TOKEN unset)")]
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    checks: list[Check] = []
    if settings.slack_signing_secret is None and settings.slack_app_token is None:
        checks.append(Check("slack", Status.FAIL, "SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET (HTTP) "
                            "nor SLACK_APP_TOKEN (Socket Mode): Slack stays off",
                            "set one of them from the app's Basic Information page"))
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url or WebClient.BASE_URL,
                       timeout=10)
    try:
        answer = client.auth_test()
    except SlackApiError as e:
        error = e.response.get("error", "error") if e.response is not None else "error"
        return [*checks, Check("slack: bot token", Status.FAIL, f"Slack refused it ({error})",
                               "copy the Bot User OAuth Token (xoxb-…) from OAuth & Permissions")]
    except Exception as e:
        return [*checks, Check("slack: bot token", Status.FAIL, f"Slack cannot be reached ({type(e).__name__})",
                               "check outbound HTTPS to slack.com (or PVEBOT_SLACK_API_URL)")]
    checks.append(Check("slack: bot token", Status.OK, f"valid for workspace {answer.get('team', '?')}"))
    header = {k.lower(): v for k, v in answer.headers.items()}.get("x-oauth-scopes")
    if header is None:
        checks.append(Check("slack: scopes", Status.WARN, "Slack did not say which scopes the token holds",
                            "compare OAuth & Permissions with adapters/slack/manifest.yml by hand"))
        return checks
    granted = {s.strip() for s in str(header).split(",") if s.strip()}
    missing = sorted(manifest_scopes() - granted)
    if missing:
        checks.append(Check("slack: scopes", Status.FAIL, f"the token lacks {', '.join(missing)}",
                            "add them under OAuth & Permissions (or re-create the app from the manifest) "
                            "and reinstall the app"))
    else:
        checks.append(Check("slack: scopes", Status.OK, "every scope of the manifest is granted"))
    return checks


def check_teams(settings: Settings) -> list[Check]:
    """An app token can be had from Azure AD with the configured id and secret."""
    from adapters.teams.setup import config_of

    config = config_of(settings)
    if config.emulator and not config.auth_enabled:
        return [Check("teams", Status.WARN, "emulator mode: /api/messages runs WITHOUT authentication",
                      "unset PVEBOT_TEAMS_EMULATOR outside a developer's machine")]
    tokens = config.tokens()
    if tokens is None:
        return [Check("teams", Status.OK, "not configured (MICROSOFT_APP_ID unset)")]
    if not settings.microsoft_app_password:
        return [Check("teams: app token", Status.FAIL, "MICROSOFT_APP_PASSWORD is not set",
                      "create a client secret under the app registration's Certificates & secrets")]
    from core.errors import BotError

    try:
        tokens.token()
    except BotError as e:
        return [Check("teams: app token", Status.FAIL, e.user_message,
                      "check MICROSOFT_APP_ID, MICROSOFT_APP_PASSWORD and MICROSOFT_APP_TENANT_ID")]
    except Exception as e:
        return [Check("teams: app token", Status.FAIL, f"Azure AD cannot be reached ({type(e).__name__})",
                      "check outbound HTTPS to login.microsoftonline.com (or PVEBOT_TEAMS_LOGIN_URL)")]
    return [Check("teams: app token", Status.OK, "Azure AD issued a Bot Framework token")]


def run(settings: Settings) -> list[Check]:
    """Every check, in the order an operator fixes things: storage, queue, clusters, chat."""
    database, engine = check_database(settings)
    checks = list(database)
    checks.extend(check_queue(settings))
    if engine is not None and database[0].status is Status.OK:
        checks.extend(check_clusters(settings, engine))
    elif engine is not None:
        checks.append(Check("clusters", Status.WARN, "not checked: the database schema is not current",
                            "run 'pvebot db upgrade', then 'pvebot doctor' again"))
    checks.extend(check_slack(settings))
    checks.extend(check_teams(settings))
    if engine is not None:
        engine.dispose()
    return checks
