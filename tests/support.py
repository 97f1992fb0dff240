"""Shared test set-up: databases (SQLite and MariaDB), a standard tenant layout, and app builders."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adapters.crypto import generate_key
from adapters.sql import migrate
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from bot.bootstrap import App, Storage, build_app
from bot.config import Settings
from bot.yamlfile import LocatedDocument
from core.chat import Answer, CommandRequest, ConversationRef, IdentityKey, Reply, StartJob, TrackApproval
from core.ids import parse_approval_id
from core.principal import Principal, Scope
from core.services import provisioning
from tests.fakes import FakeClock

MYSQL_SERVER = os.environ.get("PVEBOT_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306")
REDIS_URL = os.environ.get("PVEBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() == "true"

TOKEN_ENV = {"PVE_LAB_TOKEN": "lab-secret-0123456789", "PVE_EDGE_TOKEN": "edge-secret-9876543210"}

STANDARD_DOC = """\
clusters:
  - name: lab
    api_urls: [https://127.0.0.1:8006]
    token_id: "pvebot@pve!bot"
    token_secret_env: PVE_LAB_TOKEN
    tls: {verify: false}
    shared_templates: [9000]
companies:
  - slug: acme
    name: Acme Corp
    email_domains: [acme.example]
    pools: [{cluster: lab, pool: acme}]
    quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}
  - slug: globex
    name: Globex
    email_domains: [globex.example]
    pools: [{cluster: lab, pool: globex}]
users:
  - {email: root@host.example, name: Root, role: super_admin,
     identities: [{platform: slack, team_id: T0HOST, user_id: U0ROOT}]}
  - {email: alice@acme.example, name: Alice Admin, role: company_admin, company: acme,
     identities: [{platform: slack, team_id: T0ACME, user_id: U0ALICE},
                  {platform: teams, tenant_id: tenant-acme, aad_object_id: aad-alice}]}
  - {email: erin@acme.example, name: Erin Admin, role: company_admin, company: acme,
     identities: [{platform: slack, team_id: T0ACME, user_id: U0ERIN}]}
  - {email: bob@acme.example, name: Bob User, role: user, company: acme,
     identities: [{platform: slack, team_id: T0ACME, user_id: U0BOB},
                  {platform: teams, tenant_id: tenant-acme, aad_object_id: aad-bob}]}
  - {email: carol@globex.example, name: Carol Admin, role: company_admin, company: globex,
     identities: [{platform: slack, team_id: T0GLOBEX, user_id: U0CAROL}]}
  - {email: dave@globex.example, name: Dave User, role: user, company: globex,
     identities: [{platform: slack, team_id: T0GLOBEX, user_id: U0DAVE}]}
  - {email: sam@host.example, name: Sam Sales, role: salesperson, companies: [acme],
     identities: [{platform: slack, team_id: T0HOST, user_id: U0SAM}]}
"""


def service_missing(what: str, error: Exception) -> None:
    """A missing service fails under CI and skips elsewhere."""
    message = f"{what} is not reachable ({type(error).__name__})"
    if IN_CI:
        pytest.fail(message + " — CI needs it")
    pytest.skip(message)


@contextmanager
def mariadb_database() -> Iterator[str]:
    """A fresh, empty MariaDB database for one test, dropped afterwards."""
    name = f"pvebot_t_{uuid.uuid4().hex[:10]}"
    server = sa.create_engine(MYSQL_SERVER + "/", isolation_level="AUTOCOMMIT")
    try:
        with server.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    except sa.exc.OperationalError as e:
        server.dispose()
        service_missing("MariaDB", e)
    try:
        yield f"{MYSQL_SERVER}/{name}?charset=utf8mb4"
    finally:
        with server.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        server.dispose()


@contextmanager
def database(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'pvebot.db'}"
    else:
        with mariadb_database() as url:
            yield url


def make_storage(url: str, *, key: str | None = None, clock: FakeClock | None = None) -> Storage:
    from adapters.crypto import FernetCipher

    engine = make_engine(url)
    migrate.upgrade(engine)
    key = key or generate_key()
    settings = Settings.from_mapping({"PVEBOT_DATABASE_URL": url, "PVEBOT_SECRET_KEY": key})
    storage = Storage(settings=settings, uow_factory=SqlUnitOfWorkFactory(engine), cipher=FernetCipher([key]))
    if clock is not None:
        storage.clock = clock
    return storage


def provision(storage: Storage, doc: str = STANDARD_DOC, env: Mapping[str, str] = TOKEN_ENV) -> list[str]:
    located = LocatedDocument(doc, source="test.yaml")
    spec = provisioning.validate(located.data, locate=located.locate, env=env)
    with storage.uow_factory(Scope.everything()) as uow:
        changes = provisioning.apply(uow, spec, cipher=storage.cipher, env=env, clock=storage.clock, actor="test",
                                     locate=located.locate)
        uow.commit()
    return changes


def principal(storage: Storage, email: str) -> Principal:
    with storage.uow_factory(Scope.everything()) as uow:
        user = uow.users.by_email(email)
        assert user is not None, email
        return Principal.of(user)


def test_app(storage: Storage, **kwargs: Any) -> App:
    settings = Settings.from_mapping({**dict(storage.settings.env), "PVEBOT_JOB_TIMEOUT": "60"})
    kwargs.setdefault("progress_interval", 0.0)
    kwargs.setdefault("poll_interval", 0.01)
    return build_app(settings, storage=storage, **kwargs)


test_app.__test__ = False  # type: ignore[attr-defined]


SLACK_IDS = {
    "root@host.example": ("T0HOST", "U0ROOT"),
    "alice@acme.example": ("T0ACME", "U0ALICE"),
    "erin@acme.example": ("T0ACME", "U0ERIN"),
    "bob@acme.example": ("T0ACME", "U0BOB"),
    "carol@globex.example": ("T0GLOBEX", "U0CAROL"),
    "dave@globex.example": ("T0GLOBEX", "U0DAVE"),
    "sam@host.example": ("T0HOST", "U0SAM"),
}


class ChatDriver:
    """Types commands as a given user (through Slack identities) and returns the replies."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.conversation = ConversationRef(platform="shell", channel=f"test-{uuid.uuid4().hex[:8]}")

    def run(self, text: str, *, as_: str, request_id: str | None = None, post: bool = True) -> Reply:
        return self.ask(text, as_=as_, request_id=request_id, post=post).reply

    def ask(self, text: str, *, as_: str, request_id: str | None = None, post: bool = True) -> Answer:
        """Like :meth:`run`, and the answer's follow-ups too (which job it starts, which approval it tracks)."""
        team, user = SLACK_IDS[as_]
        request = CommandRequest(
            identity=IdentityKey("slack", team, user),
            text=text,
            conversation=self.conversation,
            request_id=request_id or uuid.uuid4().hex,
        )
        answer = self.app.dispatcher.handle(request)
        if post:
            self.app.dispatcher.deliver(answer, partial(self.app.notifier.post, self.conversation))
        return answer


def job_of(answer: Answer) -> str | None:
    """The job an answer starts once posted, if any."""
    return next((f.job_id for f in answer.followups if isinstance(f, StartJob)), None)


def card_approval(reply: Reply) -> str | None:
    """The approval an approval card is about, read from its "Request" field (apr-…)."""
    request = next((f.value for f in reply.fields if f.label == "Request"), "")
    return parse_approval_id(request) if request.startswith("apr-") else None


def approval_of(answer: Answer) -> str | None:
    """The approval whose card an answer is (tracked once posted), if any."""
    return next((f.approval_id for f in answer.followups if isinstance(f, TrackApproval)), None)
