"""From a chat identity to a :class:`Principal`, with optional automatic linking by email."""

from __future__ import annotations

from dataclasses import dataclass

from core.chat import IdentityKey
from core.errors import NotLinked
from core.model import ChatIdentity
from core.ports import Clock, Directory, UnitOfWorkFactory
from core.principal import Principal, Scope
from core.services import audit


@dataclass(frozen=True)
class Resolved:
    principal: Principal
    # set when this very request linked the identity, so the adapter can tell the user
    newly_linked: bool = False


def resolve(
    uow_factory: UnitOfWorkFactory,
    key: IdentityKey,
    *,
    clock: Clock,
    directory: Directory | None = None,
) -> Resolved:
    """Find the active user behind ``key``; link it by email domain when a directory knows it.

    Args:
        uow_factory: opens the (unscoped) lookup transaction.
        key: platform, workspace and platform user id of the caller.
        clock: for the audit event of a new link.
        directory: asks the platform for the caller's email (Slack users.info, Teams member).

    Returns:
        The principal, and whether it was linked just now.

    Raises:
        NotLinked: unknown identity that cannot be linked, or an inactive user.
    """
    with uow_factory(Scope.everything()) as uow:
        identity = uow.identities.find(
            platform=key.platform, workspace_id=key.workspace_id, platform_user_id=key.user_id
        )
        if identity is not None:
            user = uow.users.get(identity.user_id)
            if user is None or not user.active:
                raise NotLinked()
            return Resolved(Principal.of(user))
        if directory is None:
            raise NotLinked()
        email = directory.email_of(key.platform, key.workspace_id, key.user_id)
        if not email or "@" not in email:
            raise NotLinked()
        user = uow.users.by_email(email.lower())
        if user is None or not user.active or user.company_id is None:
            raise NotLinked()
        company = uow.companies.get(user.company_id)
        domain = email.lower().rsplit("@", 1)[1]
        # the email must be in the user's own company's domains: a look-alike account elsewhere links nothing
        if company is None or domain not in {d.lower() for d in company.email_domains}:
            raise NotLinked()
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
            target=f"{key.platform}:{key.workspace_id}:{key.user_id}",
            detail={"how": "email domain"},
        )
        uow.commit()
        return Resolved(Principal.of(user), newly_linked=True)


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
