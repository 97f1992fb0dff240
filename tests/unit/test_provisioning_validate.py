"""Provisioning validation: every problem at once, each with its file, line and path inside the document."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.yamlfile import LocatedDocument
from core.errors import ConfigurationError
from core.model import Role, TlsMode
from core.services import provisioning
from core.services.provisioning import Spec

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "example-provisioning.yaml"
ENV = {"PVE_LAB_TOKEN": "lab-secret", "PVE_EDGE_TOKEN": "edge-secret"}
FINGERPRINT = ":".join(["AB"] * 32)


def validate(text: str, env: dict[str, str] = ENV) -> Spec:
    doc = LocatedDocument(text, source="p.yaml")
    return provisioning.validate(doc.data, locate=doc.locate, env=env)


def problems(text: str, env: dict[str, str] = ENV) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        validate(text, env)
    return caught.value.user_message.splitlines()


def test_the_readme_example_is_valid() -> None:
    spec = validate(EXAMPLE.read_text(encoding="utf-8"))
    (lab,) = spec.clusters
    assert (lab.name, lab.token_id, lab.token_secret_env, lab.tls_mode) == (
        "lab", "pvebot@pve!bot", "PVE_LAB_TOKEN", TlsMode.FINGERPRINT)
    assert len(lab.api_urls) == 2
    assert [c.slug for c in spec.companies] == ["acme", "globex"]
    alice, sam = spec.users
    assert (alice.role, alice.company, {i.platform for i in alice.identities}) == (
        Role.COMPANY_ADMIN, "acme", {"slack", "teams"})
    assert (sam.role, sam.company, sam.companies) == (Role.SALESPERSON, None, ("acme", "globex"))


def test_an_empty_document_is_valid_and_describes_nothing() -> None:
    assert validate("") == Spec()
    assert validate("# only comments\n") == Spec()


def test_every_problem_is_listed_at_once_with_line_and_path() -> None:
    text = f"""\
clusters:
  - name: Lab
    api_urls: [http://10.0.0.1:8006]
    token_id: pvebot
    token_secret_env: PVE_MISSING
    tls: {{fingerprint: "{FINGERPRINT[:-3]}"}}
companies:
  - slug: acme
    name: Acme
    quotas: {{vms: -1, gpus: 2}}
users:
  - {{email: not-an-email, role: owner}}
  - {{email: bob@acme.example, role: user}}
"""
    assert problems(text) == [
        "p.yaml line 2: clusters[0].name: 'Lab' is not valid: lower-case letters, digits, - and _",
        "p.yaml line 3: clusters[0].api_urls[0]: 'http://10.0.0.1:8006' is not valid: like https://10.0.0.11:8006",
        "p.yaml line 3: clusters[0].api_urls: needs at least one URL",
        "p.yaml line 4: clusters[0].token_id: 'pvebot' is not valid: like pvebot@pve!bot (no secret)",
        "p.yaml line 5: clusters[0].token_secret_env: environment variable PVE_MISSING is not set",
        f"p.yaml line 6: clusters[0].tls.fingerprint: '{FINGERPRINT[:29]}…{FINGERPRINT[-33:-3]}' is not valid: "
        "32 colon-separated hex pairs (SHA-256)",
        "p.yaml line 10: companies[0].quotas.gpus: unknown key (allowed: vms, cores, memory_gb, disk_gb)",
        "p.yaml line 10: companies[0].quotas.vms: must be a whole number from 0 to 1000000000, got -1",
        "p.yaml line 12: users[0].email: 'not-an-email' is not valid: an email address",
        "p.yaml line 12: users[0].role: 'owner' is not a role; one of super_admin, company_admin, salesperson, user",
        "p.yaml line 13: users[1]: a user needs 'company'",
    ]


def test_unknown_keys_are_named_with_what_is_allowed() -> None:
    assert problems("cluster: []\n") == [
        "p.yaml line 1: cluster: unknown key (allowed: clusters, companies, users, notifications)"]
    assert problems("companies:\n  - {slug: acme, name: Acme, pool: x}\n") == [
        "p.yaml line 2: companies[0].pool: unknown key (allowed: slug, name, email_domains, pools, quotas, approval, "
        "teams_groups, networks, backup, notifications)"]


def test_the_document_and_its_sections_must_have_the_right_shape() -> None:
    assert problems("- a\n- b\n") == ["p.yaml line 1: document: must be a mapping, got a list"]
    assert problems("clusters: {name: lab}\n") == ["p.yaml line 1: clusters: must be a list, got a mapping"]
    assert problems("users:\n  - just-a-string\n") == [
        "p.yaml line 2: users[0]: must be a mapping, got 'just-a-string'"]


def test_required_keys_are_named_once() -> None:
    assert problems("clusters:\n  - name: lab\n") == [
        "p.yaml line 2: clusters[0]: 'api_urls' is required",
        "p.yaml line 2: clusters[0]: 'token_id' is required",
        "p.yaml line 2: clusters[0]: 'token_secret_env' is required",
        "p.yaml line 2: clusters[0]: 'tls' is required",
    ]


def _cluster(tls: str) -> str:
    return f"""\
clusters:
  - name: lab
    api_urls: [https://10.0.0.1:8006]
    token_id: "pvebot@pve!bot"
    token_secret_env: PVE_LAB_TOKEN
    tls: {tls}
"""


def test_tls_is_one_of_fingerprint_ca_file_or_verify_false(tmp_path: Path) -> None:
    assert validate(_cluster(f'{{fingerprint: "{FINGERPRINT.lower()}"}}')).clusters[0].tls_value == FINGERPRINT
    assert validate(_cluster("{verify: false}")).clusters[0].tls_mode is TlsMode.INSECURE
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert validate(_cluster(f"{{ca_file: {ca}}}")).clusters[0].tls_value == str(ca)
    assert problems(_cluster("{ca_file: /etc/pvebot/nope.pem}")) == [
        "p.yaml line 6: clusters[0].tls.ca_file: file '/etc/pvebot/nope.pem' does not exist"]
    assert problems(_cluster("{verify: true}")) == [
        "p.yaml line 6: clusters[0].tls.verify: only 'verify: false' is allowed here, got true; use ca_file or "
        "fingerprint to verify"]
    assert problems(_cluster(f'{{verify: false, fingerprint: "{FINGERPRINT}"}}')) == [
        "p.yaml line 6: clusters[0].tls: give exactly one of fingerprint, ca_file or verify: false"]


def test_shared_templates_are_vmids() -> None:
    text = _cluster("{verify: false}") + "    shared_templates: [9000, 99, x]\n"
    assert problems(text) == [
        "p.yaml line 7: clusters[0].shared_templates[1]: must be a whole number from 100 to 999999999, got 99",
        "p.yaml line 7: clusters[0].shared_templates[2]: must be a whole number from 100 to 999999999, got 'x'",
    ]


def test_approval_policy_is_checked() -> None:
    text = """\
companies:
  - slug: acme
    name: Acme
    approval:
      required_for: [vm.stop, vm.explode]
      exempt: [vm.reset, vm.delete]
      expires_minutes: 0
      approvers_channel: C0123
"""
    found = problems(text)
    assert found[0].startswith("p.yaml line 5: companies[0].approval.required_for[1]: unknown action "
                               "'vm.explode' (known: ")
    # the known ones are the operation catalog's, whatever it holds
    assert all(name in found[0] for name in ("vm.stop", "vm.delete", "snapshot.rollback"))
    assert found[1:] == [
        "p.yaml line 6: companies[0].approval.exempt[1]: vm.delete always needs approval; it cannot be exempt",
        "p.yaml line 7: companies[0].approval.expires_minutes: must be a whole number from 1 to 10080, got 0",
        "p.yaml line 8: companies[0].approval.approvers_channel: 'C0123' is not a channel: write it as "
        "slack:C0123ABCD or teams:<conversation id>",
    ]


def test_an_approvals_subscription_in_the_approvers_channel_is_refused() -> None:
    # the cards themselves go to the approvers channel: a subscription there would repeat each one
    text = """\
companies:
  - slug: acme
    name: Acme
    approval: {approvers_channel: "slack:C0APPROVE"}
    notifications:
      - {topic: backups, channel: "slack:C0APPROVE"}
      - {topic: approvals, channel: "slack:C0OTHER"}
      - {topic: approvals, channel: "slack:C0APPROVE"}
"""
    assert problems(text) == [
        "p.yaml line 8: companies[0].notifications[2].channel: 'slack:C0APPROVE' is the company's approvers "
        "channel (approval.approvers_channel): it gets the approval cards themselves already",
    ]


def test_roles_and_their_companies_must_agree() -> None:
    text = """\
users:
  - {email: a@acme.example, role: company_admin}
  - {email: b@acme.example, role: user, company: acme, companies: [globex]}
  - {email: s@host.example, role: salesperson}
  - {email: r@host.example, role: super_admin}
  - {email: t@host.example, role: salesperson, company: acme, companies: [globex]}
"""
    assert problems(text) == [
        "p.yaml line 2: users[0]: a company_admin needs 'company'",
        "p.yaml line 3: users[1].companies: only a salesperson is assigned to several companies",
        "p.yaml line 4: users[2]: a salesperson needs 'companies' (or 'company')",
    ]


def test_identities_need_their_platform_keys() -> None:
    text = """\
users:
  - email: a@acme.example
    role: super_admin
    identities:
      - {platform: discord, user_id: U1}
      - {platform: slack, user_id: U1}
      - {platform: teams, tenant_id: t1, aad_object_id: a1, user_id: U1}
"""
    assert problems(text) == [
        "p.yaml line 5: users[0].identities[0]: needs platform: slack or teams, got 'discord'",
        "p.yaml line 6: users[0].identities[1]: 'team_id' is required",
        "p.yaml line 7: users[0].identities[2].user_id: unknown key (allowed: platform, tenant_id, aad_object_id)",
    ]


def test_duplicates_name_both_places() -> None:
    text = """\
companies:
  - {slug: acme, name: Acme, pools: [{cluster: lab, pool: p1}]}
  - {slug: acme, name: Acme again}
  - {slug: globex, name: Globex, pools: [{cluster: lab, pool: p1}]}
users:
  - {email: A@acme.example, role: super_admin, identities: [{platform: slack, team_id: T1, user_id: U1}]}
  - {email: a@acme.example, role: super_admin}
  - {email: b@acme.example, role: super_admin, identities: [{platform: slack, team_id: T1, user_id: U1}]}
"""
    found = problems(text)
    assert "p.yaml line 3: companies[1]: company acme appears twice (first at p.yaml line 2)" in found
    assert "p.yaml line 7: users[1]: user a@acme.example appears twice (first at p.yaml line 6)" in found
    assert any(line.startswith("p.yaml line 8: users[2].identities: identity ") and "first at p.yaml line 6" in line
               for line in found)
    assert any(line.startswith("p.yaml line 4: companies[2].pools: pool ") and "first at p.yaml line 2" in line
               for line in found)
    assert len(found) == 4


def test_emails_and_domains_are_lower_cased() -> None:
    spec = validate("companies:\n  - {slug: acme, name: Acme, email_domains: [acme.example]}\n"
                    "users:\n  - {email: Alice@ACME.example, role: user, company: acme}\n")
    assert spec.users[0].email == "alice@acme.example"
    assert spec.users[0].name == "alice"


def test_broken_yaml_names_the_line() -> None:
    with pytest.raises(ConfigurationError) as caught:
        LocatedDocument("users:\n\t- {email: a@b.example}\n", source="p.yaml")
    assert caught.value.user_message == "p.yaml: line 2: found character '\\t' that cannot start any token"
    assert "\n" not in caught.value.user_message


def test_a_secret_in_the_environment_is_never_in_the_spec() -> None:
    spec = validate(_cluster("{verify: false}"), env={"PVE_LAB_TOKEN": "super-secret-value"})
    assert "super-secret-value" not in repr(spec)


# ---- companies[].teams_groups --------------------------------------------------------------------------------

ACME_USERS = "0f8fad5b-d9cb-469f-a165-70867728950e"
ACME_ADMINS = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def test_teams_groups_are_stored_lower_case_with_their_role() -> None:
    spec = validate(f"""\
companies:
  - slug: acme
    name: Acme
    email_domains: [acme.example]
    teams_groups:
      - {{group_id: {ACME_USERS.upper()}, role: user}}
      - {{group_id: {ACME_ADMINS}, role: company_admin}}
  - {{slug: globex, name: Globex}}
""")
    acme, globex = spec.companies
    assert [(g.group_id, g.role) for g in acme.teams_groups] == [(ACME_USERS, Role.USER),
                                                                 (ACME_ADMINS, Role.COMPANY_ADMIN)]
    assert acme.directory_groups == [{"group_id": ACME_USERS, "role": "user"},
                                     {"group_id": ACME_ADMINS, "role": "company_admin"}]
    assert globex.teams_groups == () and globex.directory_groups == []


def test_teams_groups_need_a_guid_and_a_role_inside_one_company() -> None:
    text = """\
companies:
  - slug: acme
    name: Acme
    email_domains: [acme.example]
    teams_groups:
      - {group_id: not-a-guid, role: user}
      - {group_id: 7c9e6679-7425-40de-944b-e07fc1f90ae7, role: super_admin}
      - {group_id: 3f2504e0-4f89-41d3-9a0c-0305e82c3301, role: salesperson}
      - {group_id: 6ba7b810-9dad-11d1-80b4-00c04fd430c8, role: admin}
      - {role: user}
      - {group_id: 6ba7b811-9dad-11d1-80b4-00c04fd430c8, role: user, name: Ops}
  - slug: globex
    name: Globex
    teams_groups: [{group_id: 6ba7b812-9dad-11d1-80b4-00c04fd430c8, role: user}]
  - {slug: initech, name: Initech, email_domains: [initech.example], teams_groups: {group_id: x}}
"""
    found = problems(text)
    assert found[0] == ("p.yaml line 6: companies[0].teams_groups[0].group_id: 'not-a-guid' is not valid: an Azure AD "
                        "group object id like 0f8fad5b-d9cb-469f-a165-70867728950e")
    # why never through a group: the people who manage the group in Azure AD would hand the role out
    for line, role, problem in ((7, "super_admin", found[1]), (8, "salesperson", found[2])):
        assert problem.startswith(f"p.yaml line {line}: companies[0].teams_groups[{line - 6}].role: a group cannot "
                                  f"give {role}: it reaches beyond one company")
        assert "whoever manages the group in Azure AD" in problem and "list such people under users" in problem
    assert found[3:] == [
        "p.yaml line 9: companies[0].teams_groups[3].role: 'admin' is not a group role; one of user, company_admin",
        "p.yaml line 10: companies[0].teams_groups[4]: 'group_id' is required",
        "p.yaml line 11: companies[0].teams_groups[5].name: unknown key (allowed: group_id, role)",
        "p.yaml line 14: companies[1].teams_groups: needs email_domains: a group member is added only with an email "
        "in them",
        "p.yaml line 15: companies[2].teams_groups: must be a list, got a mapping",
    ]


def test_a_teams_group_is_mapped_once_in_the_whole_file() -> None:
    text = f"""\
companies:
  - {{slug: acme, name: Acme, email_domains: [acme.example],
     teams_groups: [{{group_id: {ACME_USERS}, role: user}}, {{group_id: {ACME_USERS.upper()}, role: company_admin}}]}}
  - slug: globex
    name: Globex
    email_domains: [globex.example]
    teams_groups:
      - {{group_id: {ACME_ADMINS}, role: user}}
      - {{group_id: {ACME_USERS}, role: user}}
"""
    assert problems(text) == [
        f"p.yaml line 3: companies[0].teams_groups[1]: Teams group {ACME_USERS} appears twice (first at p.yaml line 3)",
        f"p.yaml line 9: companies[1].teams_groups[1]: Teams group {ACME_USERS} appears twice (first at p.yaml line 3)",
    ]


# ---- how values are quoted ------------------------------------------------------------------------------------


def test_a_bad_value_is_quoted_in_its_message() -> None:
    text = """\
users:
  - {email: a@acme.example, role: super_admin}
  - {email: b@acme.example, role: super_admin}
  - {email: c@acme.example, role: super_admin}
  - {email: d@acme.example, role: super_admin}
  - {email: e@acme.example, role: wizard}
  - {email: f@acme.example, role: super_admin, active: "yes"}
"""
    assert problems(text) == [
        "p.yaml line 6: users[4].role: 'wizard' is not a role; one of super_admin, company_admin, salesperson, user",
        "p.yaml line 7: users[5].active: must be true or false, got 'yes'",
    ]
    assert problems("companies:\n  - {slug: acme, name: 42}\n") == [
        "p.yaml line 2: companies[0].name: must be a non-empty string, got 42"]
    assert problems("companies:\n  - {slug: acme, name: ''}\n") == [
        "p.yaml line 2: companies[0].name: must be a non-empty string, got ''"]


def test_a_long_value_is_cut_in_the_middle_to_sixty_characters() -> None:
    long_name = "a" + "b" * 100 + "z"
    (line,) = problems(f"companies:\n  - {{slug: {long_name}, name: Acme}}\n")
    quoted = line.split("slug: ", 1)[1].split(" is not valid", 1)[0]
    assert quoted == "'" + "a" + "b" * 28 + "…" + "b" * 29 + "z" + "'"
    assert len(quoted) == 60 + 2
    assert provisioning.document.shown("x\ny") == "'x\\ny'"  # one line, whatever the value holds


def test_a_secret_pasted_into_the_cluster_is_never_repeated() -> None:
    secret = "5f3c1a9e-0d2b-4c7e-9a61-3b8f2e7d4c10"
    text = _cluster("{verify: false}").replace('"pvebot@pve!bot"', f'"pvebot@pve!bot={secret}"').replace(
        "token_secret_env: PVE_LAB_TOKEN", f"token_secret_env: {secret}")
    found = problems(text)
    assert found == [
        "p.yaml line 4: clusters[0].token_id: 'pvebot@pve!bot…' is not valid: like pvebot@pve!bot (no secret)",
        "p.yaml line 5: clusters[0].token_secret_env: is not an environment variable name like PVE_LAB_TOKEN "
        "(value not shown: it may be the secret; put the secret in the environment and its name here)",
    ]
    assert not any(secret in line or secret[:8] in line for line in found)
    bare = problems(_cluster("{verify: false}").replace('"pvebot@pve!bot"', f'"{secret}"'))
    assert bare == ["p.yaml line 4: clusters[0].token_id: '…' is not valid: like pvebot@pve!bot (no secret)"]


NETWORK_DOC = """\
clusters:
  - {name: lab, api_urls: ["https://10.0.0.1:8006"], token_id: "pvebot@pve!bot", token_secret_env: PVE_LAB_TOKEN,
     tls: {verify: false}}
companies:
  - slug: acme
    name: Acme
    networks:
      - {name: acme-prod, cluster: lab, cidr: 10.20.0.0/24, gateway: 10.20.0.1, vlan: 120, bridge: vmbr0,
         dns: [10.20.0.2], reserved: ["10.20.0.1-10.20.0.10"]}
  - slug: globex
    name: Globex
    networks:
      - {name: gx-prod, cluster: lab, cidr: NETWORK, gateway: GATEWAY, vlan: VLAN, bridge: vmbr0,
         reserved: [RESERVED]}
"""


def network_doc(*, cidr: str = "10.30.0.0/24", gateway: str = "10.30.0.1", vlan: str = "130",
                reserved: str = "10.30.0.2") -> str:
    return (NETWORK_DOC.replace("NETWORK", cidr).replace("GATEWAY", gateway).replace("VLAN", vlan)
            .replace("RESERVED", reserved))


def test_company_networks_are_read() -> None:
    spec = validate(network_doc())
    (acme,) = spec.companies[0].networks
    assert (acme.name, acme.cidr, acme.gateway, acme.vlan, acme.bridge, acme.dns, acme.reserved) == (
        "acme-prod", "10.20.0.0/24", "10.20.0.1", 120, "vmbr0", ("10.20.0.2",), ("10.20.0.1-10.20.0.10",))


def test_overlapping_ranges_on_one_cluster_and_vlan_are_refused_naming_both() -> None:
    assert problems(network_doc(cidr="10.20.0.128/25", gateway="10.20.0.129", vlan="120",
                                reserved="10.20.0.130")) == [
        "p.yaml line 13: companies[1].networks[0]: 10.20.0.128/25 (globex/gx-prod) overlaps 10.20.0.0/24 "
        "(acme/acme-prod, p.yaml line 8) on cluster lab VLAN 120"]
    # the same addresses on another VLAN are another network
    validate(network_doc(cidr="10.20.0.128/25", gateway="10.20.0.129", vlan="121", reserved="10.20.0.130"))


def test_gateway_reserved_and_vlan_problems_are_clear_lines() -> None:
    assert problems(network_doc(gateway="10.99.0.1", vlan="5000", reserved="10.31.0.1-10.31.0.9")) == [
        "p.yaml line 13: companies[1].networks[0].gateway: gateway 10.99.0.1 is outside 10.30.0.0/24 (or is its "
        "network or broadcast address)",
        "p.yaml line 13: companies[1].networks[0].vlan: must be a whole number from 1 to 4094, got 5000",
        "p.yaml line 14: companies[1].networks[0].reserved[0]: reserved 10.31.0.1-10.31.0.9 is outside 10.30.0.0/24"]
    assert problems(network_doc(cidr="10.30.0.1/24")) == [
        "p.yaml line 13: companies[1].networks[0].cidr: '10.30.0.1/24' has host bits set: the network is 10.30.0.0/24"]
