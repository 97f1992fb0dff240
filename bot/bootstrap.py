"""The composition root: the only place that builds concrete adapters and wires them together."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from adapters.crypto import FernetCipher
from adapters.notify import DirectoryRouter, NotifierRouter
from adapters.queue import EmbeddedQueue, RqJobQueue
from adapters.shell.outbox import OutboxNotifier
from adapters.sql import migrate
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from bot.config import Settings, SettingsError
from bot.dispatch import Dispatcher
from bot.observe import ObservedDispatcher
from commands import build_registry
from core.clock import SystemClock
from core.ports import Clock, Hypervisors, JobQueue, SecretCipher
from core.services.deps import Deps

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
            migrate.upgrade(engine)
        elif migrate.current_revision(engine) != migrate.head_revision():
            raise SettingsError("PVEBOT_DATABASE_URL", "the database schema is not current; run 'pvebot db upgrade'")
    except SettingsError:
        raise
    except Exception as e:  # driver errors carry the URL and its password: say only what failed
        raise SettingsError("PVEBOT_DATABASE_URL", f"cannot open the database ({type(e).__name__})") from None
    return SqlUnitOfWorkFactory(engine)


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
    telemetry: Any = None  # adapters.metrics.PrometheusTelemetry: /metrics reads its registry

    def close(self) -> None:
        for part in (self.queue, self.deps.hypervisors):
            close = getattr(part, "close", None)
            if close is not None:
                close()


def build_app(
    settings: Settings,
    *,
    storage: Storage | None = None,
    hypervisors: Hypervisors | None = None,
    queue: JobQueue | None = None,
    clock: Clock | None = None,
    progress_interval: float = 1.0,
    poll_interval: float = 0.5,
) -> App:
    """Wire the application from settings; tests pass their own clock or queue where they need to."""
    from adapters.metrics import PrometheusTelemetry, StateCollector

    storage = storage or open_storage(settings)
    if clock is not None:
        storage.clock = clock
    telemetry = PrometheusTelemetry()
    if hypervisors is None:
        from adapters.proxmox.gateway import ProxmoxHypervisors

        hypervisors = ProxmoxHypervisors(storage.cipher, telemetry=telemetry)
    if queue is None:
        queue = _queue(settings)
    notifier = NotifierRouter({"shell": OutboxNotifier(storage.engine)}, telemetry=telemetry)
    directory = DirectoryRouter()
    _slack(settings, notifier, directory)
    _teams(settings, notifier, directory)
    deps = Deps(
        uow_factory=storage.uow_factory,
        hypervisors=hypervisors,
        queue=queue,
        notifier=notifier,
        clock=storage.clock,
        job_timeout=settings.job_timeout,
        progress_interval=progress_interval,
        poll_interval=poll_interval,
        telemetry=telemetry,
    )
    dispatcher: Dispatcher = ObservedDispatcher(registry=build_registry(), deps=deps, directory=directory,
                                                telemetry=telemetry)
    telemetry.registry.register(StateCollector(engine=storage.engine, uow_factory=storage.uow_factory,
                                               queue_depth=lambda: _queue_depth(queue)))
    app = App(settings=settings, storage=storage, deps=deps, dispatcher=dispatcher, notifier=notifier,
              directory=directory, queue=queue, telemetry=telemetry)
    install_worker_deps(deps)
    return app


def _queue(settings: Settings) -> JobQueue:
    if settings.redis_url is None:
        return EmbeddedQueue(name=settings.queue_name, workers=settings.embedded_workers)
    from redis import Redis

    return RqJobQueue(Redis.from_url(settings.redis_url), name=settings.queue_name)


def _queue_depth(queue: JobQueue) -> int:
    """Jobs waiting in an RQ queue; 0 for a queue that cannot say (the tests' fakes)."""
    rq_queue = getattr(queue, "queue", None)
    return int(rq_queue.count) if rq_queue is not None else 0


def _slack(settings: Settings, notifier: NotifierRouter, directory: DirectoryRouter) -> None:
    """Slack's notifier and directory, when a bot token is configured."""
    if settings.slack_bot_token is None:
        return
    from adapters.slack.directory import SlackDirectory
    from adapters.slack.notifier import SlackNotifier

    notifier.add("slack", SlackNotifier(settings.slack_bot_token, base_url=settings.slack_api_url))
    directory.add("slack", SlackDirectory(settings.slack_bot_token, settings.slack_api_url))


def _teams(settings: Settings, notifier: NotifierRouter, directory: DirectoryRouter) -> None:
    """Teams' notifier and directory, when an app id is configured."""
    from adapters.teams.setup import register

    register(settings, notifiers=notifier, directories=directory)


# Workers rebuild their dependencies per process, not per job: the first job builds them from
# the settings, and an embedding process (demo, shell, serve with the embedded queue) installs its own.
_worker_deps: Deps | None = None
_worker_lock = threading.Lock()


def install_worker_deps(deps: Deps) -> None:
    global _worker_deps
    _worker_deps = deps


def worker_deps() -> Deps:
    global _worker_deps
    with _worker_lock:
        if _worker_deps is None:
            _worker_deps = build_app(Settings.load()).deps
        return _worker_deps
