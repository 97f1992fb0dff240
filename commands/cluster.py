"""``cluster …``: health per cluster, pvebot's SSH keys on the clusters, and pinning a node's host key."""

from __future__ import annotations

from commands.common import outcome_reply
from commands.registry import Args, CommandContext, CommandRegistry, Param
from core.chat import Answer, Reply, Severity, Table
from core.errors import BotError, InvalidArguments
from core.rbac import Perm
from core.services import clusters, requests, ssh_admin
from core.services.clusters import Overview


def register(registry: CommandRegistry) -> None:
    registry.command("cluster list", permission=Perm.CLUSTER_READ)(cluster_list)
    registry.command("cluster status", permission=Perm.CLUSTER_READ, args=(Param("cluster"),))(cluster_status)
    registry.command("cluster keys push", operation="cluster.keys.push", args=(Param("cluster", required=False),),
                     flags=(Param("all", bool, help="every cluster, in parallel"),
                            Param("password-env", secret_prone=True,
                                  help="the environment variable holding the password, for the first push only")),
                     usage="cluster keys push <cluster>|--all [--password-env VAR]")(keys_push)
    registry.command("cluster keys rotate", operation="cluster.keys.rotate", args=(Param("cluster", required=False),),
                     flags=(Param("all", bool, help="every cluster, in parallel"),),
                     usage="cluster keys rotate <cluster>|--all")(keys_rotate)
    registry.command("cluster keys health", operation="cluster.keys.health")(keys_health)
    registry.command("cluster trust", permission=Perm.CLUSTER_MANAGE,
                     args=(Param("cluster"), Param("node"), Param("fingerprint", required=False)),
                     usage="cluster trust <cluster> <node> [SHA256:…]")(cluster_trust)


def _line(o: Overview) -> tuple[str, ...]:
    if o.quorate is None:
        return (o.name, f"⚠️ not answering: {o.why}", "—", str(o.guests))
    quorum = "✅ quorate" if o.quorate else "❌ no quorum"
    return (o.name, quorum, f"{o.nodes_online}/{o.nodes_total}", str(o.guests))


def _provider_line(o: Overview) -> tuple[str, ...]:
    if o.quorate is None:  # the cluster did not answer: nothing is known of it here
        ssh = "—"
    elif o.key_age_days is None:
        ssh = "no key"
    else:
        # "ok" only for what a health check found: a key never checked is not known to work
        checked = any(n.ssh is not None for n in o.nodes)
        state = f"❌ {o.ssh_problems} node(s)" if o.ssh_problems else "ok" if checked else "not checked"
        ssh = f"{state} (key {o.key_age_days} d)"
    return (*_line(o), "—" if o.updates is None else str(o.updates), ssh)


def cluster_list(args: Args, ctx: CommandContext) -> Reply:
    """Your clusters, one line each: quorum, nodes online, guests (the provider also sees updates and SSH)."""
    found = clusters.overview(ctx.deps, ctx.principal)
    if not found:
        return Reply(text="no clusters")
    if ctx.principal.scope.unrestricted:
        rows = tuple(_provider_line(o) for o in found)
        columns: tuple[str, ...] = ("cluster", "quorum", "nodes online", "guests", "updates", "ssh")
    else:
        rows = tuple(_line(o) for o in found)
        columns = ("cluster", "quorum", "nodes online", "your guests")
    return Reply(title=f"Clusters ({len(found)})", table=Table(columns=columns, rows=rows))


def cluster_status(args: Args, ctx: CommandContext) -> Reply:
    """One cluster: quorum, nodes online, guests; for the provider each node's version, updates and SSH health."""
    (o,) = clusters.overview(ctx.deps, ctx.principal, cluster=args["cluster"])
    head = " · ".join(_line(o)[1:3]) + f" nodes online · {o.guests} guests"
    if not ctx.principal.scope.unrestricted:
        return Reply(title=f"Cluster {o.name}", text=head)
    key = "no SSH key yet" if o.key_age_days is None else f"SSH key {o.key_age_days} days old"
    rows = tuple((n.name, "online" if n.online else "offline", n.version or "—",
                  "—" if n.updates is None else f"{n.updates} ({n.proxmox_updates} Proxmox)", n.ssh or "not checked")
                 for n in o.nodes)
    return Reply(title=f"Cluster {o.name}", text=f"{head} · {key}",
                 table=Table(columns=("node", "state", "pve-manager", "updates", "ssh"), rows=rows) if rows else None)


def _per_cluster(args: Args, ctx: CommandContext, action: str, params: dict[str, object]) -> Answer:
    if bool(args["all"]) == bool(args["cluster"]):
        raise InvalidArguments(f"name one cluster or give --all: `{ctx.command} <cluster>|--all`")
    names = ssh_admin.cluster_names(ctx.deps, ctx.principal) if args["all"] else [args["cluster"]]
    if not names:
        return Answer(Reply(text="no clusters have SSH nodes in their provisioning"))
    if not args["all"]:
        outcome = requests.operate(ctx.deps, ctx.principal, action=action, ref=names[0], params=dict(params),
                                   conversation=ctx.conversation, request_id=ctx.request_id)
        return outcome_reply(ctx, outcome, f"{ctx.command} {names[0]}")
    answers = []
    for name in names:
        try:
            outcome = requests.operate(ctx.deps, ctx.principal, action=action, ref=name, params=dict(params),
                                       conversation=ctx.conversation, request_id=f"{ctx.request_id}:{name}")
        except BotError as e:
            # one cluster's refusal is its own line: raising would drop the jobs already made for the others
            # (made, never started) along with their lines
            answers.append(Answer(Reply.error(f"❌ {e.user_message}")))
            continue
        answers.append(outcome_reply(ctx, outcome, f"{ctx.command} {name}"))
    # one job per cluster: the queue runs them side by side, so a slow cluster holds up only its own
    text = "\n".join(a.reply.text for a in answers)
    refused = sum(1 for a in answers if a.reply.severity is Severity.ERROR)
    severity = Severity.ERROR if refused == len(answers) else Severity.WARNING if refused else Severity.INFO
    return Answer(Reply(text=text, severity=severity), followups=tuple(f for a in answers for f in a.followups))


def keys_push(args: Args, ctx: CommandContext) -> Answer:
    return _per_cluster(args, ctx, "cluster.keys.push", {"password_env": args["password-env"]})


def keys_rotate(args: Args, ctx: CommandContext) -> Answer:
    return _per_cluster(args, ctx, "cluster.keys.rotate", {})


def keys_health(args: Args, ctx: CommandContext) -> Answer:
    outcome = requests.operate(ctx.deps, ctx.principal, action="cluster.keys.health", ref="*",
                               conversation=ctx.conversation, request_id=ctx.request_id)
    return outcome_reply(ctx, outcome, "cluster keys health")


def cluster_trust(args: Args, ctx: CommandContext) -> Reply:
    """Show the host key a node presents, or pin it once you have checked it on the node's console."""
    seen = ssh_admin.trust(ctx.deps, ctx.principal, cluster=args["cluster"], node=args["node"],
                           fingerprint=args["fingerprint"])
    where = f"{args['cluster']}/{args['node']}"
    if args["fingerprint"] is None:
        return Reply(text=f"{where} shows host key {seen.seen}"
                          + (f" (pinned: {seen.pinned})" if seen.pinned else " (nothing pinned yet)")
                          + f". Check it on the node (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then "
                            f"`cluster trust {args['cluster']} {args['node']} {seen.seen}`")
    if not seen.changed:
        return Reply(text=f"{where} is already pinned to {seen.seen}")
    before = f" (was {seen.pinned})" if seen.pinned else ""
    return Reply(text=f"🔒 pinned {where} to {seen.seen}{before}", severity=Severity.SUCCESS)
