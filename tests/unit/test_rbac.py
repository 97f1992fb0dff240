"""Facts about the permission matrix, the scopes principals get, and how ``require`` answers."""

from __future__ import annotations

import pytest

from core import rbac
from core.errors import NotFound, PermissionDenied
from core.model import Company, Role, User
from core.principal import SYSTEM, Principal, Scope
from core.rbac import MATRIX, Perm

ACME = Company(slug="acme", name="Acme", id=1)
GLOBEX = Company(slug="globex", name="Globex", id=2)
INITECH = Company(slug="initech", name="Initech", id=3)


def _principal(role: Role, company_id: int | None = 1, assigned: tuple[Company, ...] = ()) -> Principal:
    return Principal.of(User(email=f"{role.value}@example.com", name=role.value, role=role, company_id=company_id,
                             assigned_companies=list(assigned), id=10))


def test_every_role_has_a_row_and_every_permission_is_granted_to_someone() -> None:
    assert set(MATRIX) == set(Role)
    assert set().union(*MATRIX.values()) == set(Perm)


def test_super_admin_may_do_everything() -> None:
    assert MATRIX[Role.SUPER_ADMIN] == frozenset(Perm)


def test_salesperson_is_read_only() -> None:
    assert MATRIX[Role.SALESPERSON] == {Perm.VM_READ, Perm.SNAPSHOT_READ, Perm.BACKUP_READ, Perm.JOB_READ,
                                        Perm.NET_READ, Perm.NOTIFY_READ}
    assert all(p.value.endswith(".read") for p in MATRIX[Role.SALESPERSON])


def test_user_operates_but_neither_decides_nor_administers() -> None:
    user = MATRIX[Role.USER]
    assert {Perm.VM_OPERATE, Perm.VM_CREATE, Perm.VM_DESTROY, Perm.SNAPSHOT_CREATE, Perm.JOB_CANCEL,
            Perm.APPROVAL_REQUEST} <= user
    assert not {Perm.APPROVAL_DECIDE, Perm.AUDIT_READ, Perm.USER_MANAGE} & user


def test_company_admin_decides_and_audits_but_manages_no_companies_or_clusters() -> None:
    admin = MATRIX[Role.COMPANY_ADMIN]
    assert {Perm.APPROVAL_DECIDE, Perm.AUDIT_READ, Perm.USER_MANAGE} <= admin
    assert admin == frozenset(Perm) - rbac.GLOBAL_PERMS


def test_roles_are_nested() -> None:
    assert MATRIX[Role.SALESPERSON] < MATRIX[Role.USER] < MATRIX[Role.COMPANY_ADMIN] < MATRIX[Role.SUPER_ADMIN]


def test_global_permissions_belong_to_super_admins_only() -> None:
    for role in Role:
        assert bool(rbac.GLOBAL_PERMS & MATRIX[role]) == (role is Role.SUPER_ADMIN)


def test_scopes_follow_the_role() -> None:
    assert _principal(Role.SUPER_ADMIN, None).scope.unrestricted
    assert _principal(Role.COMPANY_ADMIN).scope == Scope.of(1)
    assert _principal(Role.USER).scope == Scope.of(1)
    assert _principal(Role.USER, None).scope == Scope.of()  # a user without a company sees nothing
    assert _principal(Role.SALESPERSON, None, (ACME, GLOBEX)).scope == Scope.of(1, 2)
    assert _principal(Role.SALESPERSON, 3, (ACME,)).scope == Scope.of(1, 3)
    # assignments only matter for salespersons
    assert _principal(Role.USER, 1, (GLOBEX,)).scope == Scope.of(1)
    assert SYSTEM.scope.unrestricted and SYSTEM.role is Role.SUPER_ADMIN


def test_scope_contains() -> None:
    assert Scope.everything().contains(None) and Scope.everything().contains(42)
    assert Scope.of(1).contains(1) and not Scope.of(1).contains(2)
    assert not Scope.of(1).contains(None)
    assert not Scope.of().contains(1)


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("perm", list(Perm))
def test_require_in_scope_answers_as_the_matrix_says(role: Role, perm: Perm) -> None:
    p = _principal(role, 1, (ACME,))
    if perm in MATRIX[role]:
        rbac.require(p, perm, 1)
        rbac.require(p, perm)
        assert rbac.can(p, perm, 1)
    else:
        with pytest.raises(PermissionDenied, match=f"your role \\({role.value}\\) does not allow {perm.value}"):
            rbac.require(p, perm, 1)
        assert not rbac.can(p, perm, 1)


@pytest.mark.parametrize("role", [Role.COMPANY_ADMIN, Role.USER, Role.SALESPERSON])
@pytest.mark.parametrize("perm", [Perm.VM_READ, Perm.VM_DESTROY, Perm.APPROVAL_DECIDE, Perm.CLUSTER_MANAGE])
def test_out_of_scope_is_not_found_whatever_the_role_allows(role: Role, perm: Perm) -> None:
    p = _principal(role, 1, (ACME,))
    with pytest.raises(NotFound) as outside:
        rbac.require(p, perm, GLOBEX.id, what="VM")
    assert outside.value.user_message == "VM not found"
    assert not rbac.can(p, perm, GLOBEX.id)


def test_salesperson_reads_assigned_companies_and_changes_nothing() -> None:
    sam = _principal(Role.SALESPERSON, None, (ACME, GLOBEX))
    for company in (ACME, GLOBEX):
        rbac.require(sam, Perm.VM_READ, company.id)
        with pytest.raises(PermissionDenied):
            rbac.require(sam, Perm.VM_OPERATE, company.id)
    with pytest.raises(NotFound):
        rbac.require(sam, Perm.VM_READ, INITECH.id)


def test_matrix_markdown_has_one_row_per_permission() -> None:
    table = rbac.matrix_markdown().splitlines()
    assert table[0] == "| permission | super_admin | company_admin | user | salesperson |"
    assert len(table) == 2 + len(Perm)
    assert "| `vm.read` | yes | yes | yes | yes |" in table
    assert "| `cluster.manage` | yes | — | — | — |" in table
    assert "| `approval.decide` | yes | yes | — | — |" in table
