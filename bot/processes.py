"""CLI commands that run pvebot itself: ``demo``, ``shell``, ``worker`` and ``serve``."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from bot.config import Settings, SettingsError, cannot_listen

if TYPE_CHECKING:
    from adapters.shell.session import ShellSession

log = logging.getLogger("pvebot")


def add_commands(sub: Any) -> None:
    demo = sub.add_parser("demo", help="everything embedded: simulated Proxmox, two companies, a chat shell")
    demo.add_argument("--as", dest="email", default="alice@acme.example", help="demo user to act as")
    demo.add_argument("--task-seconds", type=_seconds, default=1.5, help="how long simulated Proxmox tasks take")
    demo.set_defaults(handler=_demo)

    shell = sub.add_parser("shell", help="a chat shell against the configured database, queue and clusters")
    shell.add_argument("--as", dest="email", required=True, help="act as this pvebot user")
    shell.add_argument("--wait", type=_seconds, default=120.0, help="seconds to wait for jobs at end of input")
    shell.set_defaults(handler=_shell)

    worker = sub.add_parser("worker", help="run an RQ worker on PVEBOT_REDIS_URL")
    worker.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    worker.add_argument("--metrics-port", type=_port, metavar="P",
                        help="serve this worker's Prometheus metrics on PVEBOT_HTTP_HOST:P/metrics")
    worker.set_defaults(handler=_worker)

    serve = sub.add_parser("serve", help="serve Slack and Teams over HTTP (and Slack Socket Mode)")
    serve.add_argument("--host", help="address to listen on (default: PVEBOT_HTTP_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port to listen on (default: PVEBOT_HTTP_PORT, else 3000)")
    serve.set_defaults(handler=_serve)

    from adapters.teams.package import add_commands as add_teams_package

    add_teams_package(sub)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:20]}' is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is from 1 to 65535")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:20]}' is not a number of seconds") from None
    if not 0 <= seconds < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError("seconds are 0 or more")
    return seconds


def serve_settings(args: argparse.Namespace, settings: Settings) -> Settings:
    """``settings`` with ``serve``'s ``--host``/``--port`` applied: a flag wins over its environment variable."""
    host = settings.http_host if args.host is None else args.host
    port = settings.http_port if args.port is None else args.port
    return replace(settings, http_host=host, http_port=port)


def _maintenance(app: Any) -> Any:
    from bot.bootstrap import build_maintenance

    return build_maintenance(app).start()


def _lines(stream: TextIO, *, interactive: bool) -> Any:
    from adapters.shell.session import PROMPT

    while True:
        if interactive:
            try:
                line = input(PROMPT)
            except EOFError:
                print()
                return
        else:
            line = stream.readline()
            if not line:
                return
        if line.strip() in ("/quit", "/exit"):
            return
        yield line


def shell_session(
    app: Any, *, email: str, out: TextIO, echo: bool = False, wait_seconds: float = 120.0, width: int | None = None
) -> ShellSession:
    """A terminal chat session on ``app`` (a ``bot.bootstrap.App``), wired to its dispatcher and outbox."""
    from adapters.shell.session import ShellPorts, ShellSession

    ports = ShellPorts(dispatcher=app.dispatcher, notifier=app.notifier, uow_factory=app.deps.uow_factory,
                       clock=app.deps.clock, engine=app.storage.engine)
    return ShellSession(ports, email=email, out=out, echo=echo, wait_seconds=wait_seconds, width=width)


def _log_beside(path: Any) -> None:
    from bot.logs import to_file

    to_file(path)
    if sys.stdin.isatty():
        print(f"(pvebot's log: {path})")


def _run_shell(app: Any, *, email: str, wait: float, banner: str = "") -> int:
    interactive = sys.stdin.isatty()
    session = shell_session(app, email=email, out=sys.stdout, echo=not interactive, wait_seconds=wait)
    if banner:
        print(banner)
    if interactive:
        print(f"acting as {session.email}. Type 'help', '/as EMAIL' to switch user, Ctrl-D to leave.")
    return session.run(_lines(sys.stdin, interactive=interactive))


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot import demo

    world = demo.start(task_seconds=args.task_seconds)
    _log_beside(world.data_dir / "pvebot.log")
    maintenance = _maintenance(world.app)
    users = "\n".join(f"  {email:<22} {role:<14} {scope}" for email, role, scope in demo.DEMO_USERS)
    banner = (f"pvebot demo: a simulated Proxmox cluster at {world.sim.server.url if world.sim.server else '?'}, "
              f"data in {world.data_dir}\ndemo users (switch with /as EMAIL):\n{users}")
    try:
        return _run_shell(world.app, email=args.email, wait=120.0, banner=banner)
    finally:
        maintenance.stop()
        world.close()


def _shell(args: argparse.Namespace, settings: Settings) -> int:
    from bot.bootstrap import build_app

    app = build_app(settings)
    _log_beside(settings.data_dir / "shell.log")
    maintenance = _maintenance(app)
    try:
        return _run_shell(app, email=args.email, wait=args.wait)
    finally:
        maintenance.stop()
        app.close()


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from bot.bootstrap import build_app, build_worker

    if settings.redis_url is None:  # before build_app, which would start an embedded queue
        raise SettingsError("PVEBOT_REDIS_URL", "is not set: 'pvebot worker' serves a Redis queue")
    app = build_app(settings)
    worker = build_worker(app)  # installs app.deps as what this process's jobs run with
    if args.metrics_port is not None:
        from adapters.metrics import serve_metrics

        try:
            serve_metrics(app.telemetry, host=settings.http_host, port=args.metrics_port)
        except OSError as e:
            app.close()
            raise cannot_listen(settings.http_host, args.metrics_port, e, port_settings=("--metrics-port",),
                                host_settings=("PVEBOT_HTTP_HOST",)) from None
        log.info("worker metrics on http://%s:%d/metrics", settings.http_host, args.metrics_port)
    maintenance = _maintenance(app)
    # SIGTERM is RQ's warm shutdown: the current job finishes, then the worker exits. A second
    # SIGTERM (cold shutdown) raises SystemExit inside the job, which the job runner settles as
    # failed and reports before the process ends: no job is left RUNNING either way.
    log.info("worker %s on queue %s", worker.name, settings.queue_name)
    try:
        worker.work(burst=args.burst, logging_level=settings.log_level, with_scheduler=False)
    finally:
        maintenance.stop()
        app.close()
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.bootstrap import build_app, build_server
    from bot.server import run

    # work after an ack runs in threads; a short GIL switch interval hands the event loop back
    # sooner, so acks keep within Slack's 3 s even while those threads run Python code
    sys.setswitchinterval(0.0005)
    settings = serve_settings(args, settings)
    app = build_app(settings)
    maintenance = _maintenance(app)
    if not (settings.slack_signing_secret or settings.slack_app_token or settings.microsoft_app_id):
        log.warning("neither Slack nor Teams is configured: only /healthz will answer")
    try:
        run(build_server(app), host=settings.http_host, port=settings.http_port, grace=settings.shutdown_grace)
    finally:
        maintenance.stop()
        app.close()
    return 0
