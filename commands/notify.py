"""``notify subscribe``, ``list``, ``unsubscribe`` and ``test``, typed in the channel they are for."""

from __future__ import annotations

from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Reply, Table
from core.errors import InvalidArguments
from core.rbac import Perm
from core.services import notifications

_COLUMNS = ("id", "topic", "for", "channel", "filters", "state", "last delivery (UTC)")


def _subscription_id(text: str) -> int:
    try:
        return int(text.strip().removeprefix("#"))
    except ValueError:
        raise InvalidArguments("name a subscription by its number, as 'notify list' shows it") from None


def subscribe(args: Args, ctx: CommandContext) -> Reply:
    """Subscribe this channel to backups, jobs, approvals or updates (--vm V, --only failures, --all companies)."""
    only = args["only"]
    if only is not None and only != "failures":
        raise InvalidArguments("--only takes 'failures'")
    subscription, created = notifications.subscribe(
        ctx.deps, ctx.principal, topic=notifications.parse_topic(args["topic"]),
        channel=notifications.channel_of(ctx.conversation), vm=args["vm"], only_failures=only == "failures",
        everyone=bool(args["all"]))
    what = f"{subscription.topic.value} of " + ("every company" if subscription.company_id is None else "your company")
    if not created:
        return Reply(text=f"this channel already hears about {what} (subscription {subscription.id})")
    return Reply.ok(f"this channel now hears about {what} (subscription {subscription.id}); "
                    "'notify test' sends a test message")


def list_(args: Args, ctx: CommandContext) -> Reply:
    """Notification subscriptions of your companies, with their state and last delivery."""
    found = notifications.list_subscriptions(ctx.deps, ctx.principal)
    approvers = notifications.approvers_channels(ctx.deps, ctx.principal)
    if not found and not approvers:
        hint = ("; type 'notify subscribe <topic>' in the channel to notify" if ctx.may_use("notify subscribe")
                else "")
        return Reply(text=f"no notification subscriptions{hint}")
    with ctx.deps.uow_factory(ctx.principal.scope) as uow:
        slugs = {c.id: c.slug for c in uow.companies.list()}
    now = ctx.deps.clock.now()
    rows = tuple(notifications.describe(item, company_slug=slugs.get(item.subscription.company_id or -1), now=now)
                 for item in found) + tuple(notifications.describe_approvers(a) for a in approvers)
    return Reply(title="Notification subscriptions", table=Table(columns=_COLUMNS, rows=rows))


def unsubscribe(args: Args, ctx: CommandContext) -> Reply:
    """Remove a notification subscription by its number."""
    removed = notifications.unsubscribe(ctx.deps, ctx.principal, _subscription_id(args["id"]))
    return Reply.ok(f"removed subscription {removed.id} ({removed.topic.value} in {removed.channel})")


def test(args: Args, ctx: CommandContext) -> Reply:
    """Send a test message to this channel through its subscriptions."""
    queued = notifications.test(ctx.deps, ctx.principal, channel=notifications.channel_of(ctx.conversation))
    return Reply(text=f"test message queued for {queued} subscription(s) of this channel")


def register(registry: CommandRegistry) -> None:
    registry.command("notify subscribe", permission=Perm.NOTIFY_MANAGE, args=(Param("topic"),),
                     flags=(Param("vm", required=False), Param("only", required=False), Param("all", bool)),
                     usage="notify subscribe <backups|jobs|approvals|updates> [--vm V] [--only failures] [--all]",
                     )(subscribe)
    registry.command("notify list", permission=Perm.NOTIFY_READ)(list_)
    registry.command("notify unsubscribe", permission=Perm.NOTIFY_MANAGE, args=(Param("id"),))(unsubscribe)
    registry.command("notify test", permission=Perm.NOTIFY_MANAGE)(test)
