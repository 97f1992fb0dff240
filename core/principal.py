"""Who is acting, and which companies they may see.

A :class:`Scope` travels with every repository: a query made through a scoped repository
cannot return another company's rows, so a service cannot forget the tenant filter.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.model import Role, User


@dataclass(frozen=True)
class Scope:
    """The companies visible to someone. ``company_ids is None`` means every company."""

    company_ids: frozenset[int] | None

    @classmethod
    def everything(cls) -> Scope:
        return cls(company_ids=None)

    @classmethod
    def of(cls, *company_ids: int) -> Scope:
        return cls(company_ids=frozenset(company_ids))

    @property
    def unrestricted(self) -> bool:
        return self.company_ids is None

    def contains(self, company_id: int | None) -> bool:
        if self.company_ids is None:
            return True
        return company_id is not None and company_id in self.company_ids


@dataclass(frozen=True)
class Principal:
    """An authenticated pvebot user acting through some chat identity."""

    user_id: int
    email: str
    name: str
    role: Role
    company_id: int | None
    scope: Scope

    @classmethod
    def of(cls, user: User) -> Principal:
        assert user.id is not None
        if user.role is Role.SUPER_ADMIN:
            scope = Scope.everything()
        elif user.role is Role.SALESPERSON:
            ids = set(user.assigned_company_ids)
            if user.company_id is not None:
                ids.add(user.company_id)
            scope = Scope(company_ids=frozenset(ids))
        else:
            scope = Scope(company_ids=frozenset({user.company_id} if user.company_id is not None else ()))
        return cls(
            user_id=user.id, email=user.email, name=user.name, role=user.role, company_id=user.company_id, scope=scope
        )

    @property
    def actor(self) -> str:
        """How the audit trail names this principal."""
        return self.email


SYSTEM = Principal(
    user_id=0, email="system", name="pvebot", role=Role.SUPER_ADMIN, company_id=None, scope=Scope.everything()
)
