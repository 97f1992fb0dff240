"""From a chat identity to a :class:`Principal`, with optional automatic linking.

An unknown identity is linked to the pvebot user with the same email when that email is in the
user's company's domains. When no user has the email, a company that maps directory groups
(Azure AD groups, from the provisioning file) to roles gets a new user, if the member is in one
of its groups and the email is in its domains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.chat import IdentityKey
from core.errors import DuplicateRequest, NotLinked
from core.model import ChatIdentity, Company, Role, User
from core.ports import Clock, Directory, UnitOfWork, UnitOfWorkFactory
from core.principal import Principal, Scope
from core.services import audit
from core.services.directory_cache import DirectoryCache

log = logging.getLogger(__name__)

# What a directory group can make someone, most privileged last. Never super_admin or salesperson:
# both reach beyond one company, and whoever manages a group in Azure AD would hand them out.
GROUP_ROLES: tuple[Role, ...] = (Role.USER, Role.COMPANY_ADMIN)
_EMAIL_MAX = 254  # the users.email column


@dataclass(frozen=True)
class Resolved:
    principal: Principal
    # set when this very request linked the identity, so the adapter can tell the user
    newly_linked: bool = False
    # the directory version the principal was read at (None: not known)
    version: int | None = None


def resolve(
    uow_factory: UnitOfWorkFactory,
    key: IdentityKey,
    *,
    clock: Clock,
    directory: Directory | None = None,
    cache: DirectoryCache | None = None,
) -> Resolved:
    """Find the active user behind ``key``; link it by email domain, or create it by directory group.

    Args:
        uow_factory: opens the (unscoped) lookup transaction.
        key: platform, workspace and platform user id of the caller.
        clock: for the audit events of a new link or user.
        directory: asks the platform for the caller's email, name and groups.
        cache: keeps a linked identity's principal while the directory version stays.

    Returns:
        The principal, and whether it was linked just now.

    Raises:
        NotLinked: unknown identity that cannot be linked, or an inactive user.
    """
    try:
        return _resolve_once(uow_factory, key, clock=clock, directory=directory, cache=cache)
    except DuplicateRequest:
        # a second first message raced the first one to link this identity: it is linked now
        return _resolve_once(uow_factory, key, clock=clock, directory=None, cache=cache)


def _resolve_once(
    uow_factory: UnitOfWorkFactory, key: IdentityKey, *, clock: Clock, directory: Directory | None,
    cache: DirectoryCache | None,
) -> Resolved:
    # every command passes here: the look-up reads only, without a transaction to begin or end
    with uow_factory(Scope.everything(), autocommit=True) as uow:
        version = uow.directory_version() if cache is not None else None
        kept = cache.get(version, ("principal", key)) if cache is not None else None
        if isinstance(kept, Principal):
            return Resolved(kept, version=version)
        identity = uow.identities.find(
            platform=key.platform, workspace_id=key.workspace_id, platform_user_id=key.user_id
        )
        if identity is not None:
            user = uow.users.get(identity.user_id)
            if user is None or not user.active:
                raise NotLinked()
            principal = Principal.of(user)
            if cache is not None:
                cache.put(version, ("principal", key), principal)
            return Resolved(principal, version=version)
    if directory is None:
        raise NotLinked()
    return _link(uow_factory, key, clock=clock, directory=directory)


def _link(uow_factory: UnitOfWorkFactory, key: IdentityKey, *, clock: Clock, directory: Directory) -> Resolved:
    """Link an identity seen for the first time to the user its directory email names, or refuse."""
    email = (directory.email_of(key.platform, key.workspace_id, key.user_id) or "").strip().lower()
    if "@" not in email or len(email) > _EMAIL_MAX:
        raise NotLinked()
    domain = email.rsplit("@", 1)[1]
    with uow_factory(Scope.everything()) as uow:
        user = uow.users.by_email(email)
        if user is None:
            user = _add_by_group(uow, key, email=email, directory=directory, clock=clock)
            how = "directory group"
        else:
            if not user.active or user.company_id is None:
                raise NotLinked()
            company = uow.companies.get(user.company_id)
            # the email must be in the user's own company's domains: a look-alike account elsewhere links nothing
            if company is None or domain not in _domains(company):
                raise NotLinked()
            how = "email domain"
        uow.identities.add(
            ChatIdentity(
                platform=key.platform, workspace_id=key.workspace_id, platform_user_id=key.user_id, user_id=user.id or 0
            )
        )
        audit.record(
            uow,
            clock=clock,
            actor=user.email,
            action="identity.linked",
            company_id=user.company_id,
            target=_where(key),
            detail={"how": how},
        )
        uow.commit()
        return Resolved(Principal.of(user), newly_linked=True)


def _add_by_group(uow: UnitOfWork, key: IdentityKey, *, email: str, directory: Directory, clock: Clock) -> User:
    """A new user of the one company that maps a group of the member and owns the email's domain."""
    mapped = [c for c in uow.companies.list() if c.directory_groups]
    if not mapped:
        raise NotLinked()  # no company maps groups: do not ask the directory (a Graph call) for nothing
    groups = {g.lower() for g in directory.groups_of(key.platform, key.workspace_id, key.user_id)}
    domain = email.rsplit("@", 1)[1]
    candidates: list[tuple[Company, Role, str]] = []
    for company in mapped:
        if domain not in _domains(company):
            continue
        # a role stored as anything else (a hand-edited row) gives nothing
        matched = [(Role(g["role"]), g.get("group_id", "").lower()) for g in company.directory_groups
                   if g.get("group_id", "").lower() in groups and g.get("role") in GROUP_ROLES]
        if matched:
            # the most privileged role wins; among equals the smallest group id, so the audit trail is stable
            role, group_id = min(matched, key=lambda m: (-GROUP_ROLES.index(m[0]), m[1]))
            candidates.append((company, role, group_id))
    if len(candidates) != 1:
        log.info("not linking %s: %s", _where(key),
                 "no group of the member is mapped by a company of its email domain" if not candidates
                 else f"{len(candidates)} companies map its groups for its email domain; provision the person")
        raise NotLinked()
    company, role, group_id = candidates[0]
    name = (directory.name_of(key.platform, key.workspace_id, key.user_id) or "").strip() or email.split("@")[0]
    user = User(email=email, name=name[:200], role=role, company_id=company.id)
    uow.users.add(user)
    audit.record(
        uow,
        clock=clock,
        actor=email,
        action="user.created",
        company_id=company.id,
        target=email,
        detail={"how": "directory group", "group_id": group_id, "role": role.value},
    )
    return user


def _domains(company: Company) -> set[str]:
    return {d.lower() for d in company.email_domains}


def _where(key: IdentityKey) -> str:
    return f"{key.platform}:{key.workspace_id}:{key.user_id}"


def link_local(uow_factory: UnitOfWorkFactory, email: str, *, clock: Clock) -> IdentityKey:
    """The terminal identity of ``email`` for ``pvebot shell``, linked on first use.

    Whoever runs the shell already holds the database credentials; the shell is an operator
    console, so it may act as any active user, and says so in the audit trail.

    Raises:
        NotLinked: no active user has that email.
    """
    key = IdentityKey(platform="shell", workspace_id="local", user_id=email.lower())
    with uow_factory(Scope.everything()) as uow:
        user = uow.users.by_email(email.lower())
        if user is None or not user.active or user.id is None:
            raise NotLinked(f"no active pvebot user has the email {email[:80]}")
        if uow.identities.find(platform=key.platform, workspace_id=key.workspace_id, platform_user_id=key.user_id):
            return key
        uow.identities.add(ChatIdentity(platform=key.platform, workspace_id=key.workspace_id,
                                        platform_user_id=key.user_id, user_id=user.id))
        audit.record(uow, clock=clock, actor=user.email, action="identity.linked", company_id=user.company_id,
                     target=f"shell:local:{key.user_id}", detail={"how": "pvebot shell"})
        uow.commit()
    return key
