"""``pvebot admin apply`` with the README's example file, on SQLite and MariaDB.

Applying twice changes nothing the second time; ``--dry-run`` changes nothing at all; a
broken file changes nothing and says where it is broken (file, line and path).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.crypto import generate_key
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from bot import cli
from core.model import Role, TlsMode
from core.principal import Principal, Scope

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "example-provisioning.yaml"
EXAMPLE_TEXT = EXAMPLE.read_text(encoding="utf-8")
LAB_SECRET = "0b8f3c1e-lab-token-secret"
FIRST_RUN = [
    "+ cluster lab",
    "+ company acme",
    "+ pool lab/acme-prod -> acme",
    "+ pool lab/acme-dev -> acme",
    "+ range acme/acme-prod 10.20.0.0/24 on lab VLAN 120",
    "+ company globex",
    "+ pool lab/globex -> globex",
    "+ user alice@acme.example (company_admin)",
    "+ identity slack:T0ACME:U0ALICE -> alice@acme.example",
    "+ identity teams:72f988bf-86f1-41af-91ab-2d7cd011db47:5c2b8f4e-1d3a-4e6b-9f70-8a1c2d3e4f50 -> alice@acme.example",
    "+ user sam@host.example (salesperson)",
    "+ identity slack:T0HOST:U0SAM -> sam@host.example",
]


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def pvebot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str], db_url: str
) -> Iterator[Callable[..., Run]]:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("PVEBOT_", "PVE_", "SLACK_", "MICROSOFT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PVEBOT_DATABASE_URL", db_url)
    monkeypatch.setenv("PVEBOT_SECRET_KEY", generate_key())
    monkeypatch.setenv("PVE_LAB_TOKEN", LAB_SECRET)

    def run(*args: str) -> Run:
        code = cli.main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    assert run("db", "upgrade").code == 0
    yield run


@pytest.fixture
def uow_factory(db_url: str) -> Iterator[SqlUnitOfWorkFactory]:
    engine = make_engine(db_url)
    yield SqlUnitOfWorkFactory(engine)
    engine.dispose()


def _write(tmp_path: Path, text: str, name: str = "provisioning.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def _state(run: Callable[..., Run]) -> str:
    exported = run("admin", "export")
    assert exported.code == 0
    return exported.out


def test_applying_the_readme_example_twice_changes_nothing_the_second_time(
    pvebot: Callable[..., Run], uow_factory: SqlUnitOfWorkFactory
) -> None:
    first = pvebot("admin", "apply", str(EXAMPLE))
    assert first.code == 0, first.err
    assert first.out.splitlines() == [*FIRST_RUN, "changed 12 item(s)"]
    second = pvebot("admin", "apply", str(EXAMPLE))
    assert (second.code, second.out, second.err) == (0, "no change\n", "")

    with uow_factory(Scope.everything()) as uow:
        lab = uow.clusters.by_name("lab")
        assert lab is not None
        assert lab.api_urls == ["https://pve1.lab.example:8006", "https://pve2.lab.example:8006"]
        assert (lab.token_id, lab.token_secret_env, lab.tls_mode) == ("pvebot@pve!bot", "PVE_LAB_TOKEN",
                                                                      TlsMode.FINGERPRINT)
        assert LAB_SECRET not in lab.token_secret_encrypted and LAB_SECRET not in repr(lab)
        acme = uow.companies.by_slug("acme")
        assert acme is not None
        assert (acme.email_domains, acme.quotas["vms"], acme.approval_expiry_minutes) == (["acme.example"], 20, 60)
        alice = uow.users.by_email("alice@acme.example")
        sam = uow.users.by_email("sam@host.example")
        assert alice is not None and sam is not None
        assert (alice.role, alice.company_id) == (Role.COMPANY_ADMIN, acme.id)
        assert {i.platform for i in uow.identities.for_user(alice.id or 0)} == {"slack", "teams"}
        assert sam.role is Role.SALESPERSON
        sam_scope = Principal.of(sam).scope
        bindings = uow.pool_bindings.list()
    assert sam_scope == Scope(company_ids=frozenset(b.company_id for b in bindings))  # acme and globex


def test_dry_run_shows_the_changes_and_makes_none(pvebot: Callable[..., Run]) -> None:
    empty = _state(pvebot)
    dry = pvebot("admin", "apply", str(EXAMPLE), "--dry-run")
    assert dry.code == 0
    assert dry.out.splitlines() == [*FIRST_RUN, "would change 12 item(s)"]
    assert _state(pvebot) == empty
    assert pvebot("admin", "audit").out == ""  # not even the audit trail
    assert pvebot("admin", "apply", str(EXAMPLE)).out.splitlines()[-1] == "changed 12 item(s)"
    assert pvebot("admin", "apply", str(EXAMPLE), "--dry-run").out == "no change\n"


def test_a_change_in_the_file_is_applied_and_reported(pvebot: Callable[..., Run], tmp_path: Path) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    changed = EXAMPLE_TEXT.replace("      - {cluster: lab, pool: acme-dev}\n", "").replace(
        "name: Globex Corporation", "name: Globex Corp")
    result = pvebot("admin", "apply", str(_write(tmp_path, changed)))
    assert result.out.splitlines() == [
        "- pool lab/acme-dev from acme",
        "~ company globex: name 'Globex Corporation' -> 'Globex Corp'",
        "changed 2 item(s)",
    ]


def test_a_new_token_secret_is_stored_without_showing_it(
    pvebot: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    monkeypatch.setenv("PVE_LAB_TOKEN", "a-brand-new-secret")
    result = pvebot("admin", "apply", str(EXAMPLE))
    assert result.out == "~ cluster lab: token secret changed\nchanged 1 item(s)\n"
    trail = pvebot("admin", "audit").out
    assert "token secret changed" in trail
    assert "a-brand-new-secret" not in trail and LAB_SECRET not in trail


def test_an_unknown_company_reference_changes_nothing_and_names_the_line(
    pvebot: Callable[..., Run], tmp_path: Path
) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    before = _state(pvebot)
    # a valid change early in the file, and a reference to a company that exists nowhere later on
    broken = EXAMPLE_TEXT.replace("name: Acme Corp", "name: Acme Renamed").replace(
        "companies: [acme, globex]", "companies: [acme, initech]")
    path = _write(tmp_path, broken)
    result = pvebot("admin", "apply", str(path))
    assert result.code == 1 and "Traceback" not in result.err
    line = _line_of(broken, "companies: [acme, initech]")
    assert result.err == f"pvebot: {path} line {line}: unknown company 'initech'\n"
    assert result.out == ""
    assert _state(pvebot) == before


def test_a_pool_of_another_company_is_refused_and_changes_nothing(pvebot: Callable[..., Run], tmp_path: Path) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    before = _state(pvebot)
    grab = "companies:\n  - slug: initech\n    name: Initech\n    pools:\n      - {cluster: lab, pool: acme-prod}\n"
    path = _write(tmp_path, grab)
    result = pvebot("admin", "apply", str(path))
    assert (result.code, result.err) == (
        1, f"pvebot: {path} line 5: companies[0].pools[0]: pool lab/acme-prod already belongs to another company\n")
    assert _state(pvebot) == before


def test_a_bad_fingerprint_is_a_validation_error_at_its_line(pvebot: Callable[..., Run], tmp_path: Path) -> None:
    broken = EXAMPLE_TEXT.replace('fingerprint: "8E:1B:7A', 'fingerprint: "ZZ:1B:7A').replace(
        "role: company_admin", "role: admin")
    path = _write(tmp_path, broken)
    result = pvebot("admin", "apply", str(path))
    assert result.code == 1 and "Traceback" not in result.err
    fingerprint_line, role_line = _line_of(broken, "fingerprint: \"ZZ"), _line_of(broken, "role: admin")
    errors = result.err.removeprefix("pvebot: ").splitlines()
    assert len(errors) == 2  # every problem at once
    assert errors[0].startswith(f"{path} line {fingerprint_line}: clusters[0].tls.fingerprint: 'ZZ:1B:7A")
    assert errors[0].endswith("is not valid: 32 colon-separated hex pairs (SHA-256)")
    assert errors[1] == (f"{path} line {role_line}: users[0].role: 'admin' is not a role; one of super_admin, "
                         "company_admin, salesperson, user")
    assert _state(pvebot) == "clusters: []\ncompanies: []\nusers: []\n"


def test_a_missing_token_secret_names_the_variable(
    pvebot: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PVE_LAB_TOKEN")
    result = pvebot("admin", "apply", str(EXAMPLE))
    line = _line_of(EXAMPLE_TEXT, "token_secret_env: PVE_LAB_TOKEN")
    assert (result.code, result.err) == (
        1, f"pvebot: {EXAMPLE} line {line}: clusters[0].token_secret_env: environment variable PVE_LAB_TOKEN "
           "is not set\n")


def test_broken_yaml_names_the_line(pvebot: Callable[..., Run], tmp_path: Path) -> None:
    path = _write(tmp_path, EXAMPLE_TEXT.replace("    name: Acme Corp\n", "    name: Acme Corp\n\tbad: tab\n"))
    result = pvebot("admin", "apply", str(path))
    line = _line_of(path.read_text(), "\tbad: tab")
    assert (result.code, result.err) == (
        1, f"pvebot: {path}: line {line}: found character '\\t' that cannot start any token\n")


# ---- companies[].teams_groups --------------------------------------------------------------------------------

ACME_USERS, ACME_ADMINS = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d", "1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9"
GROUP_LINE = f"      - {{group_id: {ACME_USERS}, role: user}}\n"
# the example with a second group, for company admins
ADMIN_LINE = f"      - {{group_id: {ACME_ADMINS}, role: company_admin}}\n"
WITH_ADMINS = EXAMPLE_TEXT.replace(GROUP_LINE, GROUP_LINE + ADMIN_LINE)


def test_teams_groups_are_stored_exported_and_unchanged_the_second_time(
    pvebot: Callable[..., Run], uow_factory: SqlUnitOfWorkFactory, tmp_path: Path
) -> None:
    assert GROUP_LINE in EXAMPLE_TEXT
    assert pvebot("admin", "apply", str(_write(tmp_path, WITH_ADMINS))).code == 0
    with uow_factory(Scope.everything()) as uow:
        acme, globex = uow.companies.by_slug("acme"), uow.companies.by_slug("globex")
        assert acme is not None and globex is not None
        assert acme.directory_groups == [{"group_id": ACME_USERS, "role": "user"},
                                         {"group_id": ACME_ADMINS, "role": "company_admin"}]
        assert globex.directory_groups == []
    exported = _state(pvebot)
    assert (f"  teams_groups:\n  - {{group_id: {ACME_USERS}, role: user}}\n"
            f"  - {{group_id: {ACME_ADMINS}, role: company_admin}}\n") in exported
    assert exported.count("teams_groups") == 1  # not for globex, which maps none
    # the export applies back without a change, groups included
    assert pvebot("admin", "apply", str(_write(tmp_path, exported, "exported.yaml"))).out == "no change\n"
    # upper-case ids in the file are the same groups
    upper = WITH_ADMINS.replace(ACME_USERS, ACME_USERS.upper())
    assert pvebot("admin", "apply", str(_write(tmp_path, upper))).out == "no change\n"


def test_a_company_s_teams_groups_are_replaced_as_a_whole(pvebot: Callable[..., Run], tmp_path: Path) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    result = pvebot("admin", "apply", str(_write(tmp_path, WITH_ADMINS)))
    assert result.out.splitlines() == [
        f"~ company acme: directory_groups [{{'group_id': '{ACME_USERS}', 'role': 'user'}}] -> "
        f"[{{'group_id': '{ACME_USERS}', 'role': 'user'}}, {{'group_id': '{ACME_ADMINS}', 'role': 'company_admin'}}]",
        "changed 1 item(s)",
    ]
    none = EXAMPLE_TEXT.replace("    teams_groups:\n" + GROUP_LINE, "")
    result = pvebot("admin", "apply", str(_write(tmp_path, none)))
    assert result.out.splitlines() == [
        f"~ company acme: directory_groups [{{'group_id': '{ACME_USERS}', 'role': 'user'}}, "
        f"{{'group_id': '{ACME_ADMINS}', 'role': 'company_admin'}}] -> []",
        "changed 1 item(s)",
    ]
    assert "teams_groups" not in _state(pvebot)
    assert "directory_groups" in pvebot("admin", "audit").out


def test_a_group_of_a_company_outside_the_file_is_refused(pvebot: Callable[..., Run], tmp_path: Path) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    before = _state(pvebot)
    grab = ("companies:\n  - slug: initech\n    name: Initech\n    email_domains: [acme.example]\n"
            f"    teams_groups:\n      - {{group_id: {ACME_USERS.upper()}, role: user}}\n")
    path = _write(tmp_path, grab)
    result = pvebot("admin", "apply", str(path))
    assert (result.code, result.err) == (
        1, f"pvebot: {path} line 6: companies[0].teams_groups[0]: Teams group {ACME_USERS} is already mapped by "
           "another company\n")
    assert _state(pvebot) == before
    # a file that describes both companies may move the group from one to the other
    moved = EXAMPLE_TEXT.replace("    teams_groups:\n" + GROUP_LINE, "").replace(
        "    email_domains: [globex.example]\n",
        f"    email_domains: [globex.example]\n    teams_groups: [{{group_id: {ACME_USERS}, role: user}}]\n")
    result = pvebot("admin", "apply", str(_write(tmp_path, moved)))
    assert result.code == 0, result.err
    assert [line.split(":")[0] for line in result.out.splitlines()] == [
        "~ company acme", "~ company globex", "changed 2 item(s)"]


def test_a_range_overlapping_another_company_s_is_refused_and_changes_nothing(
    pvebot: Callable[..., Run], tmp_path: Path
) -> None:
    assert pvebot("admin", "apply", str(EXAMPLE)).code == 0
    before = _state(pvebot)
    assert "acme-prod" in before and "10.20.0.0/24" in before  # ranges come back out of export
    grab = ("companies:\n  - slug: initech\n    name: Initech\n    pools: [{cluster: lab, pool: initech}]\n"
            "    networks:\n      - {name: ini-net, cluster: lab, cidr: 10.20.0.64/26, vlan: 120, bridge: vmbr0}\n")
    path = _write(tmp_path, grab)
    result = pvebot("admin", "apply", str(path))
    assert (result.code, result.err) == (
        1, f"pvebot: {path} line 6: companies[0].networks[0]: 10.20.0.64/26 (initech/ini-net) overlaps "
           "10.20.0.0/24 (acme/acme-prod, already provisioned) on cluster lab VLAN 120\n")
    assert _state(pvebot) == before  # not even the company or its pool
    # on another VLAN the same addresses are another network
    other = grab.replace("vlan: 120", "vlan: 121")
    result = pvebot("admin", "apply", str(_write(tmp_path, other)))
    assert result.code == 0, result.err
    assert "+ range initech/ini-net 10.20.0.64/26 on lab VLAN 121" in result.out
