"""The ``pvebot`` command line, run in-process through ``bot.cli.main`` on SQLite and MariaDB.

Settings come from the environment (set with ``monkeypatch.setenv``); every failure must be
one line on stderr and an exit code, never a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from adapters.crypto import FernetCipher, generate_key
from adapters.sql import migrate
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from bot import cli
from bot.dispatch import Dispatcher
from commands import build_registry
from core.chat import ChannelRef, CommandRequest, ConversationRef, IdentityKey
from core.errors import NotLinked
from core.model import AuditEvent, Role
from core.principal import Scope
from core.rbac import matrix_markdown
from core.services import channels, identity
from core.services.deps import Deps
from tests.fakes import FakeClock, FakeHypervisors, FakeNotifier, FakeQueue
from tests.support import TOKEN_ENV

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "example-provisioning.yaml"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Cli = Callable[..., Run]


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean environment: no stray settings, no .env file in the working directory."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("PVEBOT_", "PVE_", "SLACK_", "MICROSOFT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PVEBOT_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*args: str) -> Run:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def pvebot(cli_env: pytest.MonkeyPatch, run: Cli, db_url: str) -> Iterator[Cli]:
    """``pvebot`` on an upgraded database of either backend, with a key and the token secrets set."""
    cli_env.setenv("PVEBOT_DATABASE_URL", db_url)
    cli_env.setenv("PVEBOT_SECRET_KEY", generate_key())
    for name, value in TOKEN_ENV.items():
        cli_env.setenv(name, value)
    assert run("db", "upgrade").code == 0
    yield run


def _single_line_error(result: Run, code: int) -> str:
    assert result.code == code, result
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("pvebot: ")
    return lines[0]


# ---- database --------------------------------------------------------------------------


def test_db_upgrade_creates_and_then_keeps_the_schema(cli_env: pytest.MonkeyPatch, run: Cli, db_url: str) -> None:
    cli_env.setenv("PVEBOT_DATABASE_URL", db_url)
    first = run("db", "upgrade")
    assert (first.code, first.out) == (0, f"database at revision {migrate.head_revision()}\n")
    again = run("db", "upgrade")
    assert (again.code, again.out) == (0, first.out)
    engine = make_engine(db_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_mariadb_insists_on_an_upgraded_schema(cli_env: pytest.MonkeyPatch, run: Cli, db_url: str) -> None:
    cli_env.setenv("PVEBOT_DATABASE_URL", db_url)
    result = run("admin", "export")
    if db_url.startswith("sqlite"):  # the embedded default upgrades itself
        assert result.code == 0 and "clusters: []" in result.out
    else:
        assert _single_line_error(result, 2) == (
            "pvebot: PVEBOT_DATABASE_URL: the database schema is not current; run 'pvebot db upgrade'")


def test_an_unreachable_database_is_one_line_without_the_password(cli_env: pytest.MonkeyPatch, run: Cli) -> None:
    cli_env.setenv("PVEBOT_DATABASE_URL", "mysql+pymysql://pvebot:hunter2@127.0.0.1:1/pvebot")
    line = _single_line_error(run("db", "upgrade"), 2)
    assert line == "pvebot: PVEBOT_DATABASE_URL: cannot open the database (OperationalError)"
    assert "hunter2" not in line


# ---- settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PVEBOT_HTTP_PORT", "eighty", "pvebot: PVEBOT_HTTP_PORT: must be a whole number, got 'eighty'"),
        ("PVEBOT_DATABASE_URL", "postgresql://db/pvebot",
         "pvebot: PVEBOT_DATABASE_URL: use sqlite:///PATH or mysql+pymysql://USER:PASS@HOST/DB"),
        ("PVEBOT_LOG_LEVEL", "chatty", "pvebot: PVEBOT_LOG_LEVEL: use DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_a_bad_setting_stops_with_one_line_naming_it(
    cli_env: pytest.MonkeyPatch, run: Cli, name: str, value: str, message: str
) -> None:
    cli_env.setenv(name, value)
    assert _single_line_error(run("admin", "matrix"), 2) == message


def test_a_missing_secret_key_stops_commands_that_need_it(cli_env: pytest.MonkeyPatch, run: Cli) -> None:
    assert _single_line_error(run("admin", "apply", str(EXAMPLE)), 2) == (
        "pvebot: PVEBOT_SECRET_KEY: is not set; create one with 'pvebot admin gen-key'")


def test_a_bad_dotenv_value_is_reported_too(cli_env: pytest.MonkeyPatch, run: Cli, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PVEBOT_JOB_TIMEOUT=1\n")
    assert _single_line_error(run("admin", "matrix"), 2) == (
        "pvebot: PVEBOT_JOB_TIMEOUT: must be between 10 and 86400")


# ---- admin -----------------------------------------------------------------------------


def test_gen_key_prints_a_fresh_fernet_key(cli_env: pytest.MonkeyPatch, run: Cli) -> None:
    first, second = run("admin", "gen-key"), run("admin", "gen-key")
    assert first.code == second.code == 0
    assert first.out != second.out
    Fernet(first.out.strip().encode())  # a valid key
    FernetCipher([first.out.strip()])


def test_matrix_prints_the_permission_table(cli_env: pytest.MonkeyPatch, run: Cli) -> None:
    result = run("admin", "matrix")
    assert (result.code, result.out) == (0, matrix_markdown() + "\n")


def test_export_round_trips_and_holds_no_secret(pvebot: Cli, tmp_path: Path) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    exported = pvebot("admin", "export")
    assert exported.code == 0
    assert TOKEN_ENV["PVE_LAB_TOKEN"] not in exported.out
    assert "token_secret_env: PVE_LAB_TOKEN" in exported.out
    assert "gAAAA" not in exported.out  # no Fernet token either
    copy = tmp_path / "exported.yaml"
    copy.write_text(exported.out)
    again = pvebot("admin", "apply", str(copy))
    assert (again.code, again.out) == (0, "no change\n")


def test_apply_lists_an_approvers_channel_pvebot_cannot_post_into_yet(pvebot: Cli, tmp_path: Path,
                                                                       db_url: str) -> None:
    teams = EXAMPLE.read_text().replace('approvers_channel: "slack:C0ACMEOPS"',
                                        'approvers_channel: "teams:19:ops@thread.tacv2"')
    assert teams != EXAMPLE.read_text()
    changed = tmp_path / "teams.yaml"
    changed.write_text(teams)
    waiting = ("! company acme: the approvers channel teams:19:ops@thread.tacv2 cannot be reached yet: the bot has not "
               "been added to this Teams channel (type any pvebot command there once)")
    dry = pvebot("admin", "apply", str(changed), "--dry-run")
    assert dry.code == 0 and dry.out.splitlines()[-1] == waiting
    assert waiting in pvebot("admin", "apply", str(changed)).out.splitlines()

    # once someone has written in the channel, it is ready and apply says nothing more
    engine = make_engine(db_url)
    try:
        channel = ChannelRef(platform="teams", channel_id="19:ops@thread.tacv2", workspace_id="tenant-acme",
                             service_url="https://smba.trafficmanager.net/amer/")
        channels.capture(SqlUnitOfWorkFactory(engine), channel, clock=FakeClock(), seen=channels.SeenChannels())
    finally:
        engine.dispose()
    assert pvebot("admin", "apply", str(changed)).out == "no change\n"
    # the Slack channel of the example needs no capture
    assert pvebot("admin", "apply", str(EXAMPLE)).out.splitlines()[-1].startswith("changed 1 item")


def _seed_audit(db_url: str) -> None:
    now = datetime.now(UTC)
    engine = make_engine(db_url)
    factory = SqlUnitOfWorkFactory(engine)
    try:
        with factory(Scope.everything()) as uow:
            acme = uow.companies.by_slug("acme")
            globex = uow.companies.by_slug("globex")
            assert acme is not None and globex is not None
            for at, actor, company_id, action in [
                (now - timedelta(days=2), "carol@globex.example", globex.id, "vm.start"),
                (now - timedelta(hours=3), "alice@acme.example", acme.id, "vm.stop"),
                (now - timedelta(minutes=5), "alice@acme.example", acme.id, "approval.approved"),
                (now - timedelta(minutes=1), "dave@globex.example", globex.id, "vm.reboot"),
            ]:
                uow.audit.append(AuditEvent(at=at, action=action, actor=actor, company_id=company_id, target="web01"))
            uow.commit()
    finally:
        engine.dispose()


def test_audit_filters_by_since_company_and_user(pvebot: Cli, db_url: str) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    _seed_audit(db_url)

    def actions(*args: str) -> list[str]:
        result = pvebot("admin", "audit", *args)
        assert result.code == 0, result.err
        return [line.split()[3] for line in result.out.splitlines()]

    assert actions("--company", "acme") == ["vm.stop", "approval.approved"]
    assert actions("--company", "globex", "--since", "1d") == ["vm.reboot"]
    assert actions("--user", "alice@acme.example", "--since", "1h") == ["approval.approved"]
    recent = actions("--since", "10m")
    assert [a for a in recent if a != "provisioning.change"] == ["approval.approved", "vm.reboot"]
    assert recent.count("provisioning.change") == 12  # applying the example, just now
    assert "vm.start" not in recent
    line = pvebot("admin", "audit", "--company", "globex").out.splitlines()[0]
    assert line.endswith(" carol@globex.example vm.start web01 [ok]")
    empty = pvebot("admin", "audit", "--user", "nobody@example.com")
    assert (empty.code, empty.out, empty.err) == (0, "", "no audit events match\n")


def test_audit_mistakes_are_one_line(pvebot: Cli) -> None:
    assert _single_line_error(pvebot("admin", "audit", "--company", "initech"), 1) == (
        "pvebot: company initech not found")
    assert _single_line_error(pvebot("admin", "audit", "--since", "yesterday"), 1) == (
        "pvebot: 'yesterday' is not a duration like 30m, 24h or 7d")


def test_an_unknown_file_is_one_line(pvebot: Cli, tmp_path: Path) -> None:
    line = _single_line_error(pvebot("admin", "apply", str(tmp_path / "nope.yaml")), 1)
    assert line == f"pvebot: cannot read {tmp_path / 'nope.yaml'}: No such file or directory"


# ---- the unknown chat identity ---------------------------------------------------------


def test_an_unknown_chat_identity_is_told_to_ask_an_administrator(pvebot: Cli, db_url: str) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    engine = make_engine(db_url)
    factory = SqlUnitOfWorkFactory(engine)
    clock = FakeClock()
    try:
        deps = Deps(uow_factory=factory, hypervisors=FakeHypervisors(), queue=FakeQueue(), notifier=FakeNotifier(),
                    clock=clock)
        stranger = IdentityKey("slack", "T0ACME", "U0STRANGER")
        with pytest.raises(NotLinked) as caught:
            identity.resolve(factory, stranger, clock=clock)
        assert caught.value.user_message == "you are not linked to pvebot; ask your administrator"
        known = identity.resolve(factory, IdentityKey("slack", "T0HOST", "U0SAM"), clock=clock)
        assert known.principal.role is Role.SALESPERSON and not known.newly_linked
        dispatcher = Dispatcher(registry=build_registry(), deps=deps)
        reply = dispatcher.handle(CommandRequest(identity=stranger, text="vm list",
                                                 conversation=ConversationRef(platform="shell", channel="t"),
                                                 request_id="r1")).reply
        assert reply.text == "you are not linked to pvebot; ask your administrator"
        assert reply.severity.value == "error"
    finally:
        engine.dispose()
