"""The composition root: the only place that builds concrete adapters and wires them together.

``build_app`` builds each outbound adapter once (queue, notifiers, directories, Teams' token
cache); ``build_server`` adds the inbound faces (bolt, Teams' CloudAdapter) from those same
parts; ``build_worker`` gives ``pvebot worker`` its RQ worker. Nothing here sets a process
global: the process that runs workers installs their dependencies itself (``jobs.run.install``),
and an embedded queue's threads get their app's deps when ``build_app`` starts them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from adapters.crypto import FernetCipher
from adapters.notify import DirectoryRouter, NotifierRouter
from adapters.queue import EmbeddedQueue, RqJobQueue, owner_gone
from adapters.shell.outbox import OutboxNotifier
from adapters.sql import migrate
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from bot.config import Settings, SettingsError
from bot.dispatch import Dispatcher, RateLimiter
from bot.maintenance import Maintenance
from bot.observe import ObservedDispatcher
from commands import build_registry
from core.clock import SystemClock
from core.ports import Clock, Hypervisors, JobQueue, SecretCipher
from core.services import event_sources, outbox
from core.services.deps import Deps, SshDeps
from core.services.directory_cache import DirectoryCache

log = logging.getLogger("pvebot")


@dataclass
class Storage:
    """The database side of the application: what every process (bot, worker, CLI) needs."""

    settings: Settings
    uow_factory: SqlUnitOfWorkFactory
    cipher: SecretCipher
    clock: Clock = field(default_factory=SystemClock)

    @property
    def engine(self) -> Any:
        return self.uow_factory.engine


def open_database(settings: Settings, *, auto_migrate: bool | None = None) -> SqlUnitOfWorkFactory:
    """Connect; on the embedded SQLite default create or upgrade the schema, elsewhere insist it is current."""
    if settings.database_url.startswith("sqlite:///"):
        path = settings.database_url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            from pathlib import Path

            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    if auto_migrate is None:
        auto_migrate = engine.dialect.name == "sqlite"
    try:
        if auto_migrate:
            _upgrade(engine)
        elif migrate.current_revision(engine) != migrate.head_revision():
            raise SettingsError("PVEBOT_DATABASE_URL", "the database schema is not current; run 'pvebot db upgrade'")
    except SettingsError:
        raise
    except Exception as e:  # driver errors carry the URL and its password: say only what failed
        raise SettingsError("PVEBOT_DATABASE_URL", f"cannot open the database ({type(e).__name__})") from None
    return SqlUnitOfWorkFactory(engine)


def _upgrade(engine: Engine) -> None:
    if engine.dialect.name != "mysql":
        migrate.upgrade(engine)  # the very database the bot opens (an in-memory one has no other way in)
        return
    # an ALTER TABLE on a large table may rightly take longer than any statement of the bot may wait
    migrating = make_engine(engine.url.render_as_string(hide_password=False), io_timeout=None)
    try:
        migrate.upgrade(migrating)
    finally:
        migrating.dispose()


def open_storage(settings: Settings, *, cipher_keys: tuple[str, ...] | None = None) -> Storage:
    keys = cipher_keys if cipher_keys is not None else settings.require_secret_keys()
    try:
        cipher = FernetCipher(keys)
    except Exception:
        # the cipher's own message names the variable too; keep one clear line
        raise SettingsError("PVEBOT_SECRET_KEY", "is not a valid key (expected 32 url-safe base64 bytes)") from None
    return Storage(settings=settings, uow_factory=open_database(settings), cipher=cipher)


# ---- the running application -----------------------------------------------------------


@dataclass
class App:
    """Everything a bot or worker process runs on, built once by :func:`build_app`."""

    settings: Settings
    storage: Storage
    deps: Deps
    dispatcher: Dispatcher
    notifier: NotifierRouter
    directory: DirectoryRouter
    queue: JobQueue
    teams: Any | None = None  # adapters.teams.setup.TeamsParts when Teams is on
    telemetry: Any = None  # adapters.metrics.PrometheusTelemetry: /metrics reads its registry
    slack_outbox: Any | None = None  # adapters.slack.pacing.SlackOutbox when Slack is on

    def close(self) -> None:
        # the queue first: its jobs' last edits still go out through the outbox, which drains last
        for part in (self.queue, self.deps.hypervisors, self.slack_outbox):
            close = getattr(part, "close", None)
            if close is not None:
                close()
            if part is self.queue and isinstance(part, EmbeddedQueue):
                self._settle_held(part)

    def _settle_held(self, queue: EmbeddedQueue) -> None:
        """What this process's own queue still holds ends with it: say so now, not when another process
        notices (if one ever runs on this database)."""
        from core.services import jobs

        try:
            settled = jobs.settle_held(self.deps, owner=queue.owner)
        except Exception:
            log.warning("could not settle the jobs this process still held", exc_info=True)
            return
        if settled:
            log.warning("stopping: %d job(s) this process held were settled and reported", settled)


def build_app(
    settings: Settings,
    *,
    storage: Storage | None = None,
    hypervisors: Hypervisors | None = None,
    queue: JobQueue | None = None,
    clock: Clock | None = None,
    progress_interval: float = 1.0,
    poll_interval: float = 0.5,
    follow_grace: float = 60.0,
    slack_pace: Any = None,
) -> App:
    """Wire the application from settings; tests pass their own clock or queue where they need to.

    ``slack_pace`` (an ``adapters.slack.pacing.Pace``) shrinks Slack's per-channel pacing and deadlines in tests.
    """
    from adapters.metrics import PrometheusTelemetry, StateCollector

    storage = storage or open_storage(settings)
    if clock is not None:
        storage.clock = clock
    telemetry = PrometheusTelemetry()
    if hypervisors is None:
        from adapters.proxmox.gateway import ProxmoxHypervisors

        hypervisors = ProxmoxHypervisors(storage.cipher, cache_seconds=settings.inventory_max_age,
                                         telemetry=telemetry)
    if queue is None:
        queue = _queue(settings)
    notifier = NotifierRouter({"shell": OutboxNotifier(storage.engine)}, telemetry=telemetry)
    directory = DirectoryRouter()
    slack_outbox = _slack(settings, notifier, directory, pace=slack_pace)
    teams = _teams(settings, storage, notifier, directory)
    deps = Deps(
        uow_factory=storage.uow_factory,
        hypervisors=hypervisors,
        queue=queue,
        notifier=notifier,
        clock=storage.clock,
        job_timeout=settings.job_timeout,
        progress_interval=progress_interval,
        poll_interval=poll_interval,
        follow_grace=follow_grace,
        telemetry=telemetry,
        directory_cache=DirectoryCache(clock=storage.clock),
        ssh=_ssh(settings, storage),
        direct=notifier,
    )
    dispatcher: Dispatcher = ObservedDispatcher(registry=build_registry(), deps=deps, directory=directory,
                                                telemetry=telemetry, rate_limiter=_rate_limiter(settings, queue))
    telemetry.registry.register(StateCollector(engine=storage.engine, uow_factory=storage.uow_factory,
                                               queue_depth=lambda: _queue_depth(queue)))
    app = App(settings=settings, storage=storage, deps=deps, dispatcher=dispatcher, notifier=notifier,
              directory=directory, queue=queue, teams=teams, telemetry=telemetry, slack_outbox=slack_outbox)
    if isinstance(queue, EmbeddedQueue):
        # this app owns the in-process queue: its worker threads run jobs with this app's deps
        # (thread-local, so two apps in one process, as in tests, keep theirs apart)
        from jobs import run

        queue.serve(lambda: run.install(deps, thread=True))
    return app


def doctor_deps(settings: Settings, *, engine: Any, cipher: SecretCipher, timeout: float = 5.0) -> Deps:
    """What ``pvebot doctor``'s event-hook and SSH checks run on: the database, the clusters, SSH.

    Nothing is enqueued and nothing is posted in a doctor run (the queue is the configured one, never
    served; the notifier knows no platform), so it starts no worker and connects to no chat.
    """
    from adapters.proxmox.gateway import ProxmoxHypervisors

    storage = Storage(settings=settings, uow_factory=SqlUnitOfWorkFactory(engine), cipher=cipher)
    return Deps(uow_factory=storage.uow_factory, hypervisors=ProxmoxHypervisors(cipher, timeout=timeout,
                                                                                 read_retries=0),
                queue=_queue(settings), notifier=NotifierRouter({}), clock=storage.clock,
                ssh=_ssh(settings, storage))


def _ssh(settings: Settings, storage: Storage) -> SshDeps:
    from adapters.ssh.keys import Ed25519KeyMaker
    from adapters.ssh.shell import ParamikoShell

    return SshDeps(shell=ParamikoShell(connect_timeout=float(settings.ssh_timeout)), keys=Ed25519KeyMaker(),
                   cipher=storage.cipher, environ=settings.env, parallel=settings.ssh_parallel,
                   command_timeout=3.0 * settings.ssh_timeout, upgrade_timeout=float(settings.job_timeout))


# a Redis that hangs (host paused, packets dropped) keeps its connection open and never answers: every
# call of ours must give up and become "the job queue is unavailable". redis-py waits forever by default
# before 8.0, which pyproject allows; the worker's blocking dequeue gets RQ's longer timeout on top
REDIS_TIMEOUTS = {"socket_connect_timeout": 5.0, "socket_timeout": 5.0}


def _queue(settings: Settings) -> JobQueue:
    if settings.redis_url is None:
        return EmbeddedQueue(name=settings.queue_name, workers=settings.embedded_workers)
    from redis import Redis

    return RqJobQueue(Redis.from_url(settings.redis_url, **REDIS_TIMEOUTS), name=settings.queue_name)


def _rate_limiter(settings: Settings, queue: JobQueue) -> Any:
    """With Redis, one allowance per identity shared by every serve process; embedded, this process's own."""
    if settings.redis_url is None or not isinstance(queue, RqJobQueue):
        return RateLimiter(limit=settings.rate_limit, window=settings.rate_window)
    from adapters.ratelimit import RedisRateLimiter

    return RedisRateLimiter(queue.connection, limit=settings.rate_limit, window=settings.rate_window,
                            prefix=f"pvebot:rl:{settings.queue_name}")


def _queue_depth(queue: JobQueue) -> int:
    """Jobs waiting in an RQ queue; 0 for a queue that cannot say (the tests' fakes)."""
    rq_queue = getattr(queue, "queue", None)
    return int(rq_queue.count) if rq_queue is not None else 0


def _slack(settings: Settings, notifier: NotifierRouter, directory: DirectoryRouter, *, pace: Any = None) -> Any:
    """Slack's outbox, notifier and directory, when a bot token is configured; returns the outbox."""
    if settings.slack_bot_token is None:
        return None
    from adapters.slack.directory import SlackDirectory
    from adapters.slack.notifier import SlackNotifier, outbox_client
    from adapters.slack.pacing import SlackOutbox

    # one per process: the bolt app's answers and the workers' job messages share each channel's pace
    outbox = SlackOutbox(outbox_client(settings.slack_bot_token, base_url=settings.slack_api_url), pace=pace,
                         on_rate_limited=lambda: notifier.telemetry.chat_rate_limited(platform="slack"))
    notifier.add("slack", SlackNotifier(outbox))
    directory.add("slack", SlackDirectory(settings.slack_bot_token, settings.slack_api_url))
    return outbox


def _teams(settings: Settings, storage: Storage, notifier: NotifierRouter, directory: DirectoryRouter) -> Any:
    """Teams' token cache, notifier, directory and audience lookup, once, when Teams is on."""
    from adapters.teams.setup import TeamsParts, config_of

    config = config_of(settings)
    if not config.enabled:
        return None
    from adapters.teams.directory import IdentityAudience, TeamsDirectory
    from adapters.teams.notifier import TeamsNotifier

    tokens = config.tokens()
    audience = IdentityAudience(storage.uow_factory)
    parts = TeamsParts(config=config, tokens=tokens, audience=audience,
                       notifier=TeamsNotifier(settings, tokens=tokens, audience=audience,
                                              on_rate_limited=lambda: notifier.telemetry.chat_rate_limited(
                                                  platform="teams")),
                       directory=TeamsDirectory(tokens=tokens, graph_url=config.graph_url))
    notifier.add("teams", parts.notifier)
    directory.add("teams", parts.directory)
    return parts


# ---- what each process adds ------------------------------------------------------------


def build_server(app: App) -> Any:
    """``pvebot serve``'s aiohttp application: Slack's bolt app and Teams' endpoint over ``app``'s parts."""
    from bot.server import create_app

    return create_app(app, slack=_bolt(app), teams=_teams_endpoint(app))


def _bolt(app: App) -> Any:
    settings = app.settings
    if settings.slack_bot_token is None:
        return None
    if settings.slack_signing_secret is None and settings.slack_app_token is None:
        log.warning("SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET nor SLACK_APP_TOKEN: Slack is off")
        return None
    from adapters.slack.app import build_bolt_app

    return build_bolt_app(dispatcher=app.dispatcher, bot_token=settings.slack_bot_token,
                          signing_secret=settings.slack_signing_secret, outbox=app.slack_outbox,
                          base_url=settings.slack_api_url)


def _teams_endpoint(app: App) -> Any:
    if app.teams is None:
        log.info("Teams is off: set MICROSOFT_APP_ID (or PVEBOT_TEAMS_EMULATOR=1 for the Bot Framework Emulator)")
        return None
    from botbuilder.integration.aiohttp import CloudAdapter

    from adapters.teams.app import PvebotTeamsBot, TeamsEndpoint
    from adapters.teams.auth import build_authentication

    parts = app.teams
    auth = build_authentication(parts.config, parts.tokens)
    bot = PvebotTeamsBot(dispatcher=app.dispatcher, directory=parts.directory, audience=parts.audience)
    return TeamsEndpoint(config=parts.config, adapter=CloudAdapter(auth), auth=auth, bot=bot)


def build_worker(app: App) -> Any:
    """``pvebot worker``'s RQ worker on ``PVEBOT_REDIS_URL``; installs ``app``'s deps for this process's jobs.

    Raises:
        SettingsError: no Redis configured, or it does not answer.
    """
    from redis import Redis
    from rq import SimpleWorker

    from jobs import run

    settings = app.settings
    if settings.redis_url is None:
        raise SettingsError("PVEBOT_REDIS_URL", "is not set: 'pvebot worker' serves a Redis queue")
    connection = Redis.from_url(settings.redis_url, **REDIS_TIMEOUTS)
    try:
        connection.ping()
    except Exception as e:
        raise SettingsError("PVEBOT_REDIS_URL", f"Redis does not answer ({type(e).__name__})") from None
    run.install(app.deps)
    # SimpleWorker runs jobs in this process, which keeps the database pool and the
    # hypervisor sessions warm; run more worker processes for more parallel jobs
    return SimpleWorker([settings.queue_name], connection=connection)


def build_maintenance(app: App, *, interval: float = 10.0) -> Maintenance:
    """The background sweep every pvebot process runs (not started yet)."""
    settings = app.settings
    return Maintenance(app.deps, interval=interval, stale_after=timedelta(seconds=settings.job_stale_seconds),
                       start_timeout=timedelta(seconds=settings.job_start_timeout), owner_gone=owner_gone,
                       check_interval=settings.cluster_check_interval,
                       schedule_interval=settings.schedule_check_seconds,
                       events=event_sources.PollPolicy(interval=timedelta(seconds=settings.events_poll_seconds)),
                       sending=outbox.Policy(lease=timedelta(seconds=settings.notify_lease_seconds)))
