"""Channels the bot posts into unprompted: captured when someone writes there, resolved when a card must go there.

Provisioning names a company's approvers channel as a string (``teams:19:abc@thread.tacv2``,
``slack:C0123``). Slack can post into a channel from its id alone; Teams cannot: it needs the
serviceUrl, tenant and bot id of an activity from that conversation. So every command typed in
a Teams channel or chat refreshes a :class:`KnownChannel` row, and a named channel resolves to
the stored reference, or to a clear reason why it cannot be reached yet.

Capturing a channel gives it to no company: a company's cards only ever go to the channel its
own provisioning names.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from core import rbac
from core.chat import DIRECT_PLATFORMS, ChannelRef
from core.errors import DuplicateRequest, InvalidArguments
from core.model import Company, KnownChannel
from core.ports import Clock, UnitOfWork, UnitOfWorkFactory
from core.principal import Principal, Scope

_PLATFORM_LABELS = {"teams": "Teams", "slack": "Slack"}
_Key = tuple[str, str, str]


class SeenChannels:
    """What this process last stored per channel, so that an unchanged channel costs no query at all."""

    def __init__(self, *, limit: int = 10000) -> None:
        self.limit = limit
        self._seen: dict[_Key, ChannelRef] = {}
        self._lock = threading.Lock()

    def get(self, key: _Key) -> ChannelRef | None:
        with self._lock:
            return self._seen.get(key)

    def remember(self, key: _Key, channel: ChannelRef) -> None:
        with self._lock:
            if len(self._seen) >= self.limit:
                self._seen.clear()  # forgetting costs one read per channel, never a wrong post
            self._seen[key] = channel


def _key(channel: ChannelRef) -> _Key:
    return channel.platform, channel.workspace_id, channel.channel_id


def capture(uow_factory: UnitOfWorkFactory, channel: ChannelRef, *, clock: Clock, seen: SeenChannels) -> bool:
    """Store or refresh the reference of a channel someone just wrote in; writes only when it changed.

    Args:
        uow_factory: opens the (unscoped) transaction.
        channel: the channel as the platform adapter saw it in the incoming message.
        clock: when the reference was last changed.
        seen: this process's memory of what it stored, which makes the common case free.

    Returns:
        True when a new channel was stored or a known one's reference changed (a new serviceUrl).
    """
    key = _key(channel)
    if seen.get(key) == channel:
        return False
    reference = channel.to_dict()
    with uow_factory(Scope.everything()) as uow:
        stored = uow.channels.get(platform=channel.platform, workspace_id=channel.workspace_id,
                                  channel_id=channel.channel_id)
        if stored is None:
            try:
                uow.channels.add(KnownChannel(platform=channel.platform, workspace_id=channel.workspace_id,
                                              channel_id=channel.channel_id, reference=reference,
                                              updated_at=clock.now()))
                uow.commit()
            except DuplicateRequest:
                # another process captured it at the same instant: its row will do, the next message refreshes it
                uow.rollback()
                return False
            changed = True
        elif stored.reference != reference:
            stored.reference, stored.updated_at = reference, clock.now()
            uow.commit()
            changed = True
        else:
            changed = False
    seen.remember(key, channel)
    return changed


@dataclass(frozen=True)
class Resolution:
    """A channel named in provisioning: where to post, or why that is not possible yet."""

    name: str
    channel: ChannelRef | None
    problem: str | None = None

    @property
    def waiting(self) -> bool:
        return self.channel is None


def resolve(uow: UnitOfWork, name: str) -> Resolution:
    """The postable reference of a channel named ``platform:id``.

    Args:
        uow: any unit of work (known channels are not scoped).
        name: the channel as provisioning writes it.

    Returns:
        The reference: at once for Slack and the shell, from the captured row for Teams; otherwise
        the reason why the bot cannot post there yet.
    """
    try:
        wanted = ChannelRef.parse(name)
    except InvalidArguments:
        return Resolution(name, None, "it is not written as platform:id")
    if wanted.platform in DIRECT_PLATFORMS:
        return Resolution(name, wanted)
    label = _PLATFORM_LABELS.get(wanted.platform, wanted.platform)
    found = uow.channels.with_id(platform=wanted.platform, channel_id=wanted.channel_id)
    if not found:
        return Resolution(name, None, f"the bot has not been added to this {label} channel "
                                      "(type any pvebot command there once)")
    if len(found) > 1:
        # two tenants reporting the same id: posting into either could hand one company's card to another
        return Resolution(name, None, f"more than one {label} tenant has a conversation with this id; "
                                      "pvebot will not guess which one is meant")
    return Resolution(name, ChannelRef.from_dict(found[0].reference))


def named_by(company: Company | None) -> str | None:
    """The approvers channel the company's provisioning names, as ``platform:id``; None when it names none."""
    name = str((company.approval_policy.get("approvers_channel") if company else None) or "").strip()
    if not name:
        return None
    try:
        return ChannelRef.parse(name).name
    except InvalidArguments:
        return name  # resolve() says what is wrong with it


def approvers_channel(uow_factory: UnitOfWorkFactory, company: Company | None) -> Resolution | None:
    """The company's approvers channel, resolved; None when its provisioning names none."""
    name = named_by(company)
    if name is None:
        return None
    with uow_factory(Scope.everything()) as uow:
        return resolve(uow, name)


def approvers_channels(uow_factory: UnitOfWorkFactory, principal: Principal) -> list[tuple[Company, Resolution]]:
    """The approvers channel of each company in the principal's scope that names one, resolved.

    Raises:
        PermissionDenied: the principal may not read its companies' VMs.
    """
    rbac.require(principal, rbac.Perm.VM_READ)
    with uow_factory(principal.scope) as uow:
        companies = uow.companies.list()
    with uow_factory(Scope.everything()) as uow:
        return [(c, resolve(uow, name)) for c in companies if (name := named_by(c)) is not None]


def waiting(uow: UnitOfWork) -> list[tuple[Company, Resolution]]:
    """Every company's approvers channel that cannot be posted into yet (for ``pvebot admin apply``)."""
    found = [(c, resolve(uow, name)) for c in uow.companies.list() if (name := named_by(c)) is not None]
    return [(c, r) for c, r in found if r.waiting]


def describe(resolution: Resolution) -> str:
    """One line for the requester's card and for operators: why the approvers see nothing there."""
    shown = resolution.name if len(resolution.name) <= 60 else resolution.name[:59] + "…"
    if resolution.waiting:
        return f"the approvers channel {shown} cannot be reached yet: {resolution.problem}"
    return f"the approvers channel {shown} could not be sent this request; approvers find it with 'approval list'"
