"""The ``pvebot`` command line: database, administration, and the bot's processes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bot.config import Settings, SettingsError
from core.errors import BotError

Handler = Callable[[argparse.Namespace, Settings], int]


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.sql import migrate
    from bot.bootstrap import open_database

    factory = open_database(settings, auto_migrate=True)
    print(f"database at revision {migrate.current_revision(factory.engine)}")
    return 0


def _gen_key(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.crypto import generate_key

    print(generate_key())
    return 0


def _rotate_key(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.crypto import FernetCipher, generate_key
    from bot.bootstrap import open_storage
    from core.principal import Scope
    from core.services import secrets

    storage = open_storage(settings)
    new_key = args.new_key or generate_key()
    new = FernetCipher([new_key], setting_name="--new-key")
    with storage.uow_factory(Scope.everything()) as uow:
        count = secrets.rotate(uow, old=storage.cipher, new=new, clock=storage.clock, actor="cli")
        uow.commit()
    print(f"re-encrypted {count} secret(s). Set PVEBOT_SECRET_KEY to the new key now:", file=sys.stderr)
    print(new_key)
    return 0


def _apply(args: argparse.Namespace, settings: Settings) -> int:
    from bot.bootstrap import open_storage
    from bot.yamlfile import LocatedDocument
    from core.principal import Scope
    from core.services import channels, provisioning
    from core.services.provisioning import subscriptions as declared

    storage = open_storage(settings)
    doc = LocatedDocument.read(Path(args.file))
    spec = provisioning.validate(doc.data, locate=doc.locate, env=settings.env)
    with storage.uow_factory(Scope.everything()) as uow:
        changes = provisioning.apply(
            uow, spec, cipher=storage.cipher, env=settings.env, clock=storage.clock, actor="cli", locate=doc.locate
        )
        # as the file would leave it, dry run or not (read before a rollback expires the rows)
        waiting = [f"! company {company.slug}: {channels.describe(resolution)}"
                   for company, resolution in channels.waiting(uow)]
        waiting += declared.waiting(uow)
        if args.dry_run:
            uow.rollback()
        else:
            uow.commit()
    for line in changes:
        print(line)
    verb = "would change" if args.dry_run else "changed"
    print(f"{verb} {len(changes)} item(s)" if changes else "no change")
    for line in waiting:
        print(line)
    return 0


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from bot.bootstrap import open_database
    from bot.yamlfile import dump
    from core.principal import Scope
    from core.services import provisioning

    with open_database(settings)(Scope.everything()) as uow:
        print(dump(provisioning.export(uow)), end="")
    return 0


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from bot.bootstrap import open_database
    from core.clock import SystemClock
    from core.errors import NotFound
    from core.principal import SYSTEM, Scope
    from core.services import audit

    since = audit.parse_since(args.since, now=SystemClock().now()) if args.since else None
    with open_database(settings)(Scope.everything()) as uow:
        company_id = None
        if args.company:
            company = uow.companies.by_slug(args.company)
            if company is None:
                raise NotFound(f"company {args.company} not found")
            company_id = company.id
        events = audit.query(uow, SYSTEM, since=since, company_id=company_id, actor=args.user, limit=args.limit)
    for event in events:
        print(audit.describe(event))
    if not events:
        print("no audit events match", file=sys.stderr)
    return 0


def _events(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.proxmox import ProxmoxHypervisors
    from bot.bootstrap import open_storage
    from core.errors import NotFound
    from core.principal import Scope
    from core.services import webhooks

    storage = open_storage(settings)
    with storage.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name(args.cluster)
    if cluster is None:
        raise NotFound(f"cluster '{args.cluster[:40]}' not found")
    hypervisors = ProxmoxHypervisors(storage.cipher, timeout=30)
    try:
        target = hypervisors.for_cluster(cluster)
        if args.events_command == "install":
            print(webhooks.install(storage.uow_factory, cipher=storage.cipher, clock=storage.clock,
                                   cluster_name=cluster.name, url=args.url, target=target, actor="cli"))
        elif args.events_command == "status":
            print("\n".join(webhooks.describe(webhooks.status(storage.uow_factory, cluster_name=cluster.name,
                                                               target=target))))
        else:
            print(webhooks.uninstall(storage.uow_factory, clock=storage.clock, cluster_name=cluster.name,
                                     target=target, actor="cli"))
    finally:
        hypervisors.close()
    return 0


def _matrix(args: argparse.Namespace, settings: Settings) -> int:
    from core.rbac import matrix_markdown

    print(matrix_markdown())
    return 0


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    from bot import doctor
    from core.services.doctor import exit_code, render_json, render_text

    checks = doctor.run(settings)
    print(render_json(checks) if args.json else render_text(checks))
    return exit_code(checks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pvebot", description="Chat-ops for multi-tenant Proxmox VE.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="create or upgrade the schema").set_defaults(handler=_db_upgrade)

    admin = sub.add_parser("admin", help="administration").add_subparsers(dest="admin_command", required=True)
    admin.add_parser("gen-key", help="print a fresh PVEBOT_SECRET_KEY").set_defaults(handler=_gen_key)
    rotate = admin.add_parser("rotate-key", help="re-encrypt every secret under a new key")
    rotate.add_argument("--new-key", help="the new key, as --new-key=KEY (keys may start with -); default: a fresh one")
    rotate.set_defaults(handler=_rotate_key)
    apply = admin.add_parser("apply", help="apply a provisioning file")
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    apply.set_defaults(handler=_apply)
    admin.add_parser("export", help="print the current state as a provisioning file").set_defaults(handler=_export)
    audit = admin.add_parser("audit", help="print the audit trail")
    audit.add_argument("--since", help="e.g. 30m, 24h, 7d")
    audit.add_argument("--company", help="company slug")
    audit.add_argument("--user", help="actor email")
    audit.add_argument("--limit", type=int, default=500)
    audit.set_defaults(handler=_audit)
    admin.add_parser("matrix", help="print the permission matrix").set_defaults(handler=_matrix)
    events = admin.add_parser("events", help="a cluster's webhook for backup and update events").add_subparsers(
        dest="events_command", required=True)
    install = events.add_parser("install", help="create or update the cluster's webhook target and matcher, "
                                                "then send its test")
    install.add_argument("cluster")
    install.add_argument("--url", required=True, help="pvebot's public base URL, reachable from every node")
    install.set_defaults(handler=_events)
    for name, what in (("status", "show the webhook, the last push and the poller"),
                       ("uninstall", "remove the webhook target and matcher; pulling goes on")):
        one = events.add_parser(name, help=what)
        one.add_argument("cluster")
        one.set_defaults(handler=_events)

    doctor = sub.add_parser("doctor", help="check every dependency and privilege, one line each with its fix")
    doctor.add_argument("--json", action="store_true", help="print the checks as JSON")
    doctor.set_defaults(handler=_doctor)

    from bot import processes

    processes.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.load()
        from bot.logs import configure

        configure(level=settings.log_level, json_format=settings.log_format == "json", secrets=settings.secrets)
        logging.getLogger("alembic").setLevel(logging.WARNING)
        handler: Handler = args.handler
        return handler(args, settings)
    except SettingsError as e:
        print(f"pvebot: {e}", file=sys.stderr)
        return 2
    except BotError as e:
        print(f"pvebot: {e.user_message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader (head, less) went away: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
