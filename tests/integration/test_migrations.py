"""Alembic migrations build exactly the schema of ``adapters/sql/tables.py``, on SQLite and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from adapters.sql import migrate
from adapters.sql.tables import metadata
from adapters.sql.uow import make_engine


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def _diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "target_metadata": metadata})
        return list(compare_metadata(context, metadata))


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_builds_exactly_the_tables_metadata(engine: sa.Engine) -> None:
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert _tables(engine) == set(metadata.tables) | {"alembic_version"}
    assert _diff(engine) == []


def test_upgrade_is_idempotent(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_downgrade_to_base_and_back(engine: sa.Engine) -> None:
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert _tables(engine) == {"alembic_version"}
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert _diff(engine) == []


def test_a_diff_would_be_noticed(engine: sa.Engine) -> None:
    # the comparison is not vacuous: a column the migrations lack shows up
    migrate.upgrade(engine)
    extra = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extra)
    sa.Table("companies", extra, sa.Column("logo_url", sa.String(200)), extend_existing=True)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, extra)
    assert [(d[0], d[3].name) for d in diff] == [("add_column", "logo_url")]  # type: ignore[index]


def test_revisions_form_one_line() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(scripts.get_heads()) == 1
    revisions = list(scripts.walk_revisions())
    assert revisions[-1].down_revision is None
    for revision in revisions:
        assert revision.doc, f"revision {revision.revision} has no message"


def test_upgrading_a_populated_0001_database_keeps_its_rows(engine: sa.Engine) -> None:
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO companies (slug, name, email_domains, quotas, approval_policy) "
            "VALUES ('acme', 'Acme', '[]', '{}', '{}')"
        ))
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT slug, directory_groups FROM companies")).all()
    assert [(slug, groups if isinstance(groups, str) else str(groups)) for slug, groups in rows] == [("acme", "[]")]


def test_upgrading_to_0014_keeps_the_task_each_job_followed(engine: sa.Engine) -> None:
    migrate.upgrade(engine, "0013")
    with engine.begin() as conn:
        for job_id, upid in (("j1", "UPID:pve1:0001:vzdump:100:pvebot@pve!bot:"), ("j2", None)):
            conn.execute(sa.text(
                "INSERT INTO jobs (id, request_id, company_id, actor_user_id, action, target, params, state, "
                "created_at, conversation, summary, upid, progress, result, message_ref, cancel_requested) "
                "VALUES (:id, :id, 7, 1, 'backup.now', '{}', '{}', 'succeeded', '2026-12-02 10:00:00', '{}', '', "
                ":upid, '', '', '{}', 0)"), {"id": job_id, "upid": upid})
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT job_id, upid, company_id FROM job_tasks")).all()
    assert [tuple(r) for r in rows] == [("j1", "UPID:pve1:0001:vzdump:100:pvebot@pve!bot:", 7)]
