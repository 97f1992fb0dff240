"""Creating users from directory groups (``identity.resolve``) with a fake directory, on SQLite and MariaDB.

An unknown identity whose email no pvebot user has becomes a user of the one company that maps one
of the member's groups and owns the email's domain; in every other case it stays "not linked".
"""

from __future__ import annotations

import pytest

from bot.bootstrap import Storage
from core.chat import IdentityKey
from core.errors import NotLinked
from core.model import Role
from core.principal import Scope
from core.services import identity
from tests.fakes import FakeDirectory
from tests.support import STANDARD_DOC, provision

USERS = "0f8fad5b-d9cb-469f-a165-70867728950e"
ADMINS = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
GLOBEX = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
FRANK = IdentityKey("teams", "tenant-acme", "aad-frank")

GROUPS_DOC = STANDARD_DOC.replace(
    "    email_domains: [acme.example]\n",
    "    email_domains: [acme.example]\n"
    f"    teams_groups: [{{group_id: {USERS.upper()}, role: user}}, {{group_id: {ADMINS}, role: company_admin}}]\n",
).replace(
    "    email_domains: [globex.example]\n",
    f"    email_domains: [globex.example]\n    teams_groups: [{{group_id: {GLOBEX}, role: user}}]\n",
)


@pytest.fixture
def directory() -> FakeDirectory:
    return FakeDirectory()


def _resolve(storage: Storage, directory: FakeDirectory, key: IdentityKey = FRANK) -> identity.Resolved:
    return identity.resolve(storage.uow_factory, key, clock=storage.clock, directory=directory)


def _audit(storage: Storage) -> list[tuple[str, str, dict[str, object]]]:
    with storage.uow_factory(Scope.everything()) as uow:
        return [(e.action, e.target, e.detail) for e in uow.audit.query()
                if e.action in ("user.created", "identity.linked")]


def _no_user(storage: Storage, email: str) -> bool:
    with storage.uow_factory(Scope.everything()) as uow:
        return uow.users.by_email(email) is None


def test_a_member_of_a_mapped_group_becomes_a_user_of_that_company(
    storage: Storage, directory: FakeDirectory
) -> None:
    provision(storage, GROUPS_DOC)
    directory.add("teams", "tenant-acme", "aad-frank", email="Frank@Acme.Example", name="Frank Fox", groups=(USERS,))

    resolved = _resolve(storage, directory)

    assert resolved.newly_linked
    frank = resolved.principal
    assert (frank.email, frank.name, frank.role) == ("frank@acme.example", "Frank Fox", Role.USER)
    with storage.uow_factory(Scope.everything()) as uow:
        acme = uow.companies.by_slug("acme")
        assert acme is not None and frank.company_id == acme.id
        assert uow.identities.find(platform="teams", workspace_id="tenant-acme", platform_user_id="aad-frank")
    assert _audit(storage) == [
        ("user.created", "frank@acme.example", {"how": "directory group", "group_id": USERS, "role": "user"}),
        ("identity.linked", "teams:tenant-acme:aad-frank", {"how": "directory group"}),
    ]
    # from now on the identity is known: no directory question at all
    directory.calls.clear()
    again = _resolve(storage, directory)
    assert (again.newly_linked, again.principal.user_id, directory.calls) == (False, frank.user_id, [])


def test_the_most_privileged_mapped_role_wins_and_a_name_defaults_to_the_local_part(
    storage: Storage, directory: FakeDirectory
) -> None:
    provision(storage, GROUPS_DOC)
    # Graph's ids in any case; an unrelated group and globex's group (another domain) change nothing
    directory.add("teams", "tenant-acme", "aad-frank", email="frank@acme.example",
                  groups=(USERS, ADMINS.upper(), GLOBEX, "ffffffff-0000-4000-8000-000000000000"))

    frank = _resolve(storage, directory).principal

    assert (frank.role, frank.name) == (Role.COMPANY_ADMIN, "frank")
    assert _audit(storage)[0][2] == {"how": "directory group", "group_id": ADMINS, "role": "company_admin"}


@pytest.mark.parametrize(("email", "groups", "why"), [
    ("frank@acme.example", (), "in no group at all"),
    ("frank@acme.example", ("ffffffff-0000-4000-8000-000000000000",), "in no mapped group"),
    ("frank@initech.example", (USERS,), "a mapped group, but not the company's email domain"),
    ("frank@globex.example", (USERS,), "acme's group with globex's domain"),
])
def test_no_mapped_group_for_the_email_domain_links_nobody(
    storage: Storage, directory: FakeDirectory, email: str, groups: tuple[str, ...], why: str
) -> None:
    provision(storage, GROUPS_DOC)
    directory.add("teams", "tenant-acme", "aad-frank", email=email, groups=groups)
    with pytest.raises(NotLinked):
        _resolve(storage, directory)
    assert _no_user(storage, email), why
    assert _audit(storage) == []


def test_two_companies_for_one_member_link_nobody(storage: Storage, directory: FakeDirectory) -> None:
    # globex shares acme's domain: the member is in a group of each, and pvebot will not pick one
    provision(storage, GROUPS_DOC.replace("email_domains: [globex.example]", "email_domains: [globex.example, "
                                                                             "acme.example]"))
    directory.add("teams", "tenant-acme", "aad-frank", email="frank@acme.example", groups=(USERS, GLOBEX))
    with pytest.raises(NotLinked):
        _resolve(storage, directory)
    assert _no_user(storage, "frank@acme.example")


def test_without_mapped_groups_the_directory_is_not_asked_for_groups(
    storage: Storage, directory: FakeDirectory
) -> None:
    provision(storage)
    directory.add("teams", "tenant-acme", "aad-frank", email="frank@acme.example", groups=(USERS,))
    with pytest.raises(NotLinked):
        _resolve(storage, directory)
    assert directory.calls == [("email", "aad-frank")]


def test_an_existing_user_keeps_the_provisioned_role_and_an_inactive_one_stays_out(
    storage: Storage, directory: FakeDirectory
) -> None:
    provision(storage, GROUPS_DOC.replace(
        "{email: dave@globex.example, name: Dave User, role: user, company: globex,",
        "{email: dave@globex.example, name: Dave User, role: user, company: globex, active: false,"))
    # erin is a provisioned company_admin: linked by email, not demoted by being in the users group
    directory.add("teams", "tenant-acme", "aad-erin", email="erin@acme.example", groups=(USERS,))
    erin = _resolve(storage, directory, IdentityKey("teams", "tenant-acme", "aad-erin"))
    assert (erin.newly_linked, erin.principal.role) == (True, Role.COMPANY_ADMIN)
    # dave is deactivated: being in globex's group does not bring him back
    directory.add("teams", "tenant-globex", "aad-dave", email="dave@globex.example", groups=(GLOBEX,))
    with pytest.raises(NotLinked):
        _resolve(storage, directory, IdentityKey("teams", "tenant-globex", "aad-dave"))
    assert ("groups", "aad-erin") not in directory.calls and ("groups", "aad-dave") not in directory.calls


def test_a_stored_group_role_beyond_company_admin_gives_nothing(storage: Storage, directory: FakeDirectory) -> None:
    provision(storage)
    # a hand-edited row: the provisioning file refuses this, and the core does not trust it either
    with storage.uow_factory(Scope.everything()) as uow:
        acme = uow.companies.by_slug("acme")
        assert acme is not None
        acme.directory_groups = [{"group_id": USERS, "role": "super_admin"}]
        uow.commit()
    directory.add("teams", "tenant-acme", "aad-frank", email="frank@acme.example", groups=(USERS,))
    with pytest.raises(NotLinked):
        _resolve(storage, directory)
    assert _no_user(storage, "frank@acme.example")


def test_two_first_messages_at_once_link_the_person_once(storage: Storage) -> None:
    """A new person's first message delivered twice at the same moment: both are answered, one link is made."""
    import threading

    provision(storage)
    directory = FakeDirectory()
    key = IdentityKey("slack", "T0ACME", "U0NEWBOB")
    directory.add("slack", "T0ACME", "U0NEWBOB", email="bob@acme.example")
    barrier = threading.Barrier(8)
    results: list[object] = []

    def first_message() -> None:
        barrier.wait()
        try:
            results.append(identity.resolve(storage.uow_factory, key, clock=storage.clock, directory=directory))
        except Exception as e:  # collected, asserted below
            results.append(e)

    threads = [threading.Thread(target=first_message) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, identity.Resolved) for r in results), results
    assert {r.principal.email for r in results if isinstance(r, identity.Resolved)} == {"bob@acme.example"}
    with storage.uow_factory(Scope.everything()) as uow:
        bob = uow.users.by_email("bob@acme.example")
        assert bob is not None and bob.id is not None
        linked = [i for i in uow.identities.for_user(bob.id) if i.platform_user_id == "U0NEWBOB"]
    assert len(linked) == 1
