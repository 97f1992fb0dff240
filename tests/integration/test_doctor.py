"""``pvebot doctor`` against the Proxmox simulator over HTTPS, a real SQLite file and real Redis."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from adapters.crypto import generate_key
from adapters.proxmox.gateway import ProxmoxHypervisor, ProxmoxHypervisors
from adapters.sql import migrate
from adapters.sql.uow import make_engine
from bot import doctor
from bot.bootstrap import open_storage
from bot.cli import main
from bot.config import Settings
from core.errors import PermissionDenied
from core.model import EventSource
from core.principal import Scope
from core.services import webhooks
from core.services.doctor import Status, exit_code, render_json, render_text
from pvesim import PveSimulator, SimServer
from pvesim.api_cluster import ALL_PRIVILEGES
from tests.proxmox_support import TOKEN_ID, TOKEN_SECRET, build_simulator
from tests.support import REDIS_URL, provision, service_missing

LIMITED_ID = "pvebot@pve!limited"
LIMITED_SECRET = "0d6c9b0e-8a3f-4d21-b7c5-2e9f4a1c6d38"
# lacks both ways to a webhook target: Sys.Modify (with Sys.Audit) and Sys.AccessNetwork on /
NOHOOK_ID = "pvebot@pve!nohook"
NOHOOK_SECRET = "5b1e7d2a-9c4f-4e83-a6d0-3f8b2c7e1a94"
WRONG_PIN = ":".join(["AB"] * 32)


def _dead_url() -> str:
    """An HTTPS URL on a loopback port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"https://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[PveSimulator, SimServer]]:
    simulator = build_simulator()
    simulator.add_token(LIMITED_ID, LIMITED_SECRET, privileges=set(ALL_PRIVILEGES) - {"Sys.Modify"})
    simulator.add_token(NOHOOK_ID, NOHOOK_SECRET, privileges=set(ALL_PRIVILEGES) - {"Sys.Modify", "Sys.AccessNetwork"})
    with simulator.start() as server:
        yield simulator, server


def _doc(server: SimServer, *, clusters: str) -> str:
    return f"""\
clusters:
{clusters}
companies:
  - {{slug: acme, name: Acme Corp, email_domains: [acme.example], pools: [{{cluster: full, pool: acme}}]}}
"""


def _cluster(name: str, urls: list[str], *, token: str, env: str, pin: str) -> str:
    quoted = ", ".join(f'"{u}"' for u in urls)
    return (f'  - {{name: {name}, api_urls: [{quoted}], token_id: "{token}", token_secret_env: {env}, '
            f'tls: {{fingerprint: "{pin}"}}}}\n')


def _settings(tmp_path: Path, **extra: str) -> Settings:
    env = {"PVEBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'pvebot.db'}", "PVEBOT_SECRET_KEY": generate_key(),
           "PVE_FULL": TOKEN_SECRET, "PVE_LIMITED": LIMITED_SECRET, "PVE_NOHOOK": NOHOOK_SECRET, **extra}
    return Settings.from_mapping(env)


@pytest.fixture
def provisioned(tmp_path: Path, sim: tuple[PveSimulator, SimServer]) -> Settings:
    _, server = sim
    settings = _settings(tmp_path)
    clusters = (
        _cluster("full", [server.url, _dead_url()], token=TOKEN_ID, env="PVE_FULL", pin=server.fingerprint)
        + _cluster("limited", [server.url], token=LIMITED_ID, env="PVE_LIMITED", pin=server.fingerprint)
        + _cluster("pinned", [server.url], token=TOKEN_ID, env="PVE_FULL", pin=WRONG_PIN)
        + _cluster("nohook", [server.url], token=NOHOOK_ID, env="PVE_NOHOOK", pin=server.fingerprint)
    )
    storage = open_storage(settings)
    provision(storage, _doc(server, clusters=clusters), settings.env)
    storage.engine.dispose()
    return settings


def _lines(checks: list[doctor.Check], prefix: str) -> list[doctor.Check]:
    return [c for c in checks if c.name.startswith(prefix)]


def test_a_token_with_every_privilege_may_do_everything_and_a_dead_url_gets_its_line(provisioned: Settings) -> None:
    checks = doctor.run(provisioned)
    full = _lines(checks, "cluster full")
    first, second = full[0], full[1]
    assert first.status is Status.OK and "pinned certificate matches" in first.detail
    assert "token accepted" in first.detail
    assert second.name.startswith("cluster full: API URL #2") and second.status is Status.FAIL
    assert "no connection" in second.detail and "8006" in second.fix
    privileges = [c for c in full if c.name == "cluster full: privileges"]
    assert len(privileges) == 1 and privileges[0].status is Status.OK
    assert "create backup schedules" in privileges[0].detail


@contextmanager
def _cluster_api(settings: Settings, name: str) -> Iterator[ProxmoxHypervisor]:
    """The production gateway for one provisioned cluster: what pvebot would send with its token."""
    storage = open_storage(settings)
    with storage.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name(name)
    assert cluster is not None
    hypervisors = ProxmoxHypervisors(storage.cipher, read_retries=0)
    try:
        yield hypervisors.for_cluster(cluster)
    finally:
        hypervisors.close()
        storage.engine.dispose()


def _webhook(api: ProxmoxHypervisor, name: str) -> None:
    api.save_webhook(name, url="https://pvebot.example.com/pve/events/x", headers={}, body="{}", secrets={},
                     comment="doctor test", create=True)


def test_a_token_without_sys_modify_on_root_is_told_which_features_it_blocks(provisioned: Settings) -> None:
    checks = _lines(doctor.run(provisioned), "cluster limited: privileges")
    assert [(c.status, c.detail) for c in checks] == [
        (Status.WARN, "this token cannot create backup schedules: it lacks Sys.Modify on /")]
    assert "Sys.Modify" in checks[0].fix
    # what doctor said is what Proxmox does: the schedule is refused, while the webhook target, which
    # Sys.AccessNetwork on / allows instead, is taken
    with _cluster_api(provisioned, "limited") as api:
        with pytest.raises(PermissionDenied, match=r"lacks the Proxmox privilege Sys\.Modify on /"):
            api.save_backup_job("backup-doctor", schedule="daily", options={"all": "1", "storage": "local"},
                                create=True)
        _webhook(api, "doctor-limited")


def test_a_token_without_either_way_to_a_webhook_is_told_it_cannot_set_up_the_event_hook(
    provisioned: Settings,
) -> None:
    details = [c.detail for c in _lines(doctor.run(provisioned), "cluster nohook: privileges")]
    assert details == [
        "this token cannot create backup schedules: it lacks Sys.Modify on /",
        "this token cannot set up the Proxmox event hook (notification webhook): it lacks Sys.Modify on / "
        "(or, instead, Mapping.Modify on /mapping/notifications and Sys.AccessNetwork on /)",
    ]
    with _cluster_api(provisioned, "nohook") as api, pytest.raises(PermissionDenied):
        _webhook(api, "doctor-nohook")


def test_a_wrong_certificate_pin_is_its_own_line_and_nothing_is_sent(
    provisioned: Settings, sim: tuple[PveSimulator, SimServer]
) -> None:
    simulator, _ = sim
    before = len(simulator.requests)
    pinned = _lines(doctor.run(provisioned), "cluster pinned")
    assert len(pinned) == 1 and pinned[0].status is Status.FAIL
    assert "does not match the pinned SHA-256 fingerprint" in pinned[0].detail
    assert "pvenode cert info" in pinned[0].fix
    # the other clusters' calls arrive; the pinned cluster's token never does
    assert all(r.had_auth_header for r in simulator.requests[before:])


def test_the_report_holds_no_secret_and_exits_1_on_any_failure(
    provisioned: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    checks = doctor.run(provisioned)
    text, data = render_text(checks), render_json(checks)
    for secret in (TOKEN_SECRET, LIMITED_SECRET, *provisioned.secret_keys):
        assert secret not in text and secret not in data
    assert exit_code(checks) == 1 and json.loads(data)["ok"] is False
    assert "❌ cluster pinned" in text and "   fix: " in text
    for name, value in provisioned.env.items():
        monkeypatch.setenv(name, value)
    assert main(["doctor", "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert {c["status"] for c in printed["checks"]} >= {"ok", "warn", "fail"}


def test_a_database_behind_its_migration_head_gets_its_line(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine, "0002")
    engine.dispose()
    checks = doctor.run(settings)
    assert checks[0].name == "database" and checks[0].status is Status.FAIL
    assert "at revision 0002, behind the head" in checks[0].detail and checks[0].fix == "run 'pvebot db upgrade'"
    assert any(c.name == "clusters" and c.status is Status.WARN for c in checks)


def test_a_first_run_s_missing_embedded_database_is_no_failure_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "pvebot.db"
    settings = Settings.from_mapping({"PVEBOT_DATABASE_URL": f"sqlite:///{path}", "PVEBOT_SECRET_KEY": generate_key()})
    (check,), engine = doctor.check_database(settings)
    assert check.status is Status.OK and "does not exist yet: pvebot creates it" in check.detail and engine is None
    assert not path.parent.exists()


def test_an_empty_database_and_a_current_one(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "pvebot.db").touch()  # there, but nobody made its schema
    assert "empty (no schema yet)" in doctor.check_database(settings)[0][0].detail
    engine = make_engine(settings.database_url)
    migrate.upgrade(engine)
    engine.dispose()
    (check,), engine = doctor.check_database(settings)
    engine.dispose()
    assert check.status is Status.OK and "migration head" in check.detail


def test_an_unreachable_redis_gets_its_line(tmp_path: Path) -> None:
    port = _dead_url().rsplit(":", 1)[1]
    checks = doctor.check_queue(_settings(tmp_path, PVEBOT_REDIS_URL=f"redis://127.0.0.1:{port}/0"))
    assert [(c.name, c.status) for c in checks] == [("redis", Status.FAIL)]
    assert "does not answer" in checks[0].detail and "PVEBOT_REDIS_URL" in checks[0].fix


@pytest.mark.redis
def test_a_redis_without_workers_says_jobs_would_wait(tmp_path: Path) -> None:
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as e:
        service_missing("Redis", e)
    settings = _settings(tmp_path, PVEBOT_REDIS_URL=REDIS_URL, PVEBOT_QUEUE="pvebot-doctor-nobody")
    checks = doctor.check_queue(settings)
    assert checks[0].status is Status.OK
    assert checks[1].name == "workers" and checks[1].status is Status.FAIL and "pvebot worker" in checks[1].fix


def test_a_refused_token_gets_its_line(tmp_path: Path, sim: tuple[PveSimulator, SimServer]) -> None:
    _, server = sim
    settings = _settings(tmp_path, PVE_FULL="not-the-secret-at-all")
    storage = open_storage(settings)
    provision(storage, _doc(server, clusters=_cluster("full", [server.url], token=TOKEN_ID, env="PVE_FULL",
                                                      pin=server.fingerprint)), settings.env)
    storage.engine.dispose()
    (line,) = _lines(doctor.run(settings), "cluster full")
    assert line.status is Status.FAIL and line.detail == "Proxmox refused the API token (401)"
    assert "not-the-secret-at-all" not in render_text([line])


def test_slack_scopes_are_held_against_the_manifest(tmp_path: Path) -> None:
    from tests.slack_support import BOT_TOKEN, SIGNING_SECRET, FakeSlack

    with FakeSlack() as fake:
        settings = _settings(tmp_path, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                             PVEBOT_SLACK_API_URL=fake.api_url)
        all_scopes = ",".join(sorted(doctor.manifest_scopes()))
        fake.fail_next("auth.test", body={"ok": True, "team": "Acme"}, headers={"x-oauth-scopes": all_scopes})
        assert [(c.name, c.status) for c in doctor.check_slack(settings)] == [
            ("slack: bot token", Status.OK), ("slack: scopes", Status.OK)]
        fake.fail_next("auth.test", body={"ok": True, "team": "Acme"},
                       headers={"x-oauth-scopes": "commands,chat:write"})
        scopes = doctor.check_slack(settings)[1]
        assert scopes.status is Status.FAIL and "users:read.email" in scopes.detail and "reinstall" in scopes.fix
        wrong = _settings(tmp_path, SLACK_BOT_TOKEN="xoxb-wrong-token-123456", SLACK_SIGNING_SECRET=SIGNING_SECRET,
                          PVEBOT_SLACK_API_URL=fake.api_url)
        (refused,) = doctor.check_slack(wrong)
        assert refused.status is Status.FAIL and "invalid_auth" in refused.detail
        assert "xoxb-wrong-token-123456" not in render_text([refused])


def test_teams_without_an_app_secret_is_a_failure_and_unset_teams_is_fine(tmp_path: Path) -> None:
    assert doctor.check_teams(_settings(tmp_path))[0].status is Status.OK
    (line,) = doctor.check_teams(_settings(tmp_path, MICROSOFT_APP_ID="00000000-0000-0000-0000-000000000001"))
    assert line.status is Status.FAIL and "MICROSOFT_APP_PASSWORD" in line.detail


def _hook(checks: list[doctor.Check], cluster: str) -> doctor.Check:
    (line,) = [c for c in checks if c.name == f"cluster {cluster}: event hook"]
    return line


def test_the_event_hook_gets_its_line_from_what_pvebot_stored_and_what_the_cluster_has(
    provisioned: Settings,
) -> None:
    full = _hook(doctor.run(provisioned), "full")
    assert full.status is Status.WARN and full.detail.startswith("not installed: backup and update events arrive "
                                                                 "by polling only")
    assert "pvebot admin events install full --url" in full.fix
    assert not [c for c in doctor.run(provisioned) if c.name == "cluster pinned: event hook"]  # its API is refused
    storage = open_storage(provisioned)
    with storage.uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name("full")
        assert cluster is not None and cluster.id is not None
        uow.event_sources.save(EventSource(cluster_id=cluster.id, secret_encrypted=storage.cipher.encrypt("s3cret"),
                                           url="https://pvebot.example.com", installed_at=storage.clock.now()))
        uow.commit()
    line = _hook(doctor.run(provisioned), "full")
    assert line.status is Status.FAIL
    assert line.detail == ("installed for https://pvebot.example.com, but the cluster lacks target 'pvebot' and "
                           "matcher 'pvebot-matcher': no push arrives")
    assert line.fix == "run 'pvebot admin events install full --url https://pvebot.example.com' again"
    with _cluster_api(provisioned, "full") as api:
        api.save_webhook(webhooks.TARGET, url="https://pvebot.example.com/pve/events/full", headers={}, body="{}",
                         secrets={"token": "s3cret"}, comment="doctor test", create=True)
        api.save_matcher(webhooks.MATCHER, targets=[webhooks.TARGET], match_fields=webhooks.MATCH_FIELDS,
                         comment="doctor test", create=True)
        try:
            checks = doctor.run(provisioned)
            line = _hook(checks, "full")
            assert line.status is Status.WARN and "no push has reached pvebot yet" in line.detail
            # the same simulator answers for 'limited': a target there that pvebot holds no secret for
            limited = _hook(checks, "limited")
            assert limited.status is Status.FAIL and "pvebot holds no secret for it" in limited.detail
            with storage.uow_factory(Scope.everything()) as uow:
                uow.event_sources.pushed(cluster.id, at=storage.clock.now())
                uow.commit()
            checks = doctor.run(provisioned)
            line = _hook(checks, "full")
            assert line.status is Status.OK and line.detail.startswith("installed for https://pvebot.example.com; "
                                                                       "last push ")
            assert "s3cret" not in render_text(checks) + render_json(checks)
        finally:
            api.delete_matcher(webhooks.MATCHER)
            api.delete_webhook(webhooks.TARGET)
            storage.engine.dispose()
