"""``pvebot admin events install|status|uninstall``: the cluster's webhook target and matcher for pvebot.

Install is idempotent: it creates or replaces the target ``pvebot`` (a POST of JSON to
``<url>/pve/events/<cluster>?node=<hostname>``, the secret sent as the ``X-Pvebot-Token`` header through
the target's ``secret`` list, so Proxmox keeps it root-only and never shows it again) and the matcher
``pvebot-matcher`` (``vzdump`` and ``package-updates``; a matcher may not share a target's name), then
has the cluster send its test notification. The secret is random, stored encrypted like the API
token, and kept across re-installs so that a node still sending the old one is not refused.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from core.errors import InvalidArguments, NotFound
from core.model import Cluster, EventSource
from core.ports import Clock, ClusterNotifications, SecretCipher, UnitOfWorkFactory
from core.principal import Scope
from core.services import audit

TARGET = "pvebot"
MATCHER = "pvebot-matcher"
HEADER = "X-Pvebot-Token"
MATCH_FIELDS = ["exact:type=vzdump,package-updates"]
COMMENT = "pvebot chat-ops: backup and update events"
# what the target posts: machine-readable, with the metadata first (a vzdump message can be long)
BODY = ('{"fields":{{ json fields }},"severity":"{{ severity }}","timestamp":{{ timestamp }},'
        '"title":"{{ escape title }}","message":"{{ escape message }}"}')


@dataclass(frozen=True)
class Status:
    """What ``events status`` shows of one cluster."""

    cluster: str
    installed_at: datetime | None
    url: str | None
    target: bool  # the cluster has pvebot's webhook target
    matcher: bool
    last_push_at: datetime | None
    poller: str | None
    poller_until: datetime | None
    cursors: dict[str, int]


def _cluster(uow_factory: UnitOfWorkFactory, name: str) -> Cluster:
    with uow_factory(Scope.everything()) as uow:
        cluster = uow.clusters.by_name(name)
    if cluster is None or cluster.id is None:
        raise NotFound(f"cluster '{name[:40]}' not found")
    return cluster


def hook_url(base: str, cluster: str) -> str:
    """The templated URL the target posts to, from pvebot's public base URL.

    Raises:
        InvalidArguments: not an http(s) URL.
    """
    base = base.strip().rstrip("/")
    if not base.startswith(("https://", "http://")) or len(base) > 300 or any(c in base for c in " {}\n"):
        raise InvalidArguments("--url must be pvebot's public base URL, e.g. https://pvebot.example.com")
    return f"{base}/pve/events/{cluster}?node={{{{ url-encode fields.hostname }}}}"


def install(uow_factory: UnitOfWorkFactory, *, cipher: SecretCipher, clock: Clock, cluster_name: str, url: str,
            target: ClusterNotifications, actor: str) -> str:
    """Create or update the cluster's webhook target and matcher, then fire the target's test.

    Args:
        uow_factory: pvebot's database.
        cipher: encrypts the secret at rest.
        clock: when it was installed.
        cluster_name: the cluster, as provisioned.
        url: pvebot's public base URL, reachable from every node.
        target: the cluster's notification configuration.
        actor: who installs it, for the audit trail.

    Returns:
        What was done, in one line.

    Raises:
        NotFound: no such cluster.
        InvalidArguments: a bad URL.
        ExternalSystemError: the cluster refused the configuration, or its test did not reach pvebot.
    """
    cluster = _cluster(uow_factory, cluster_name)
    assert cluster.id is not None
    templated = hook_url(url, cluster.name)
    with uow_factory(Scope.everything()) as uow:
        source = uow.event_sources.get(cluster.id) or EventSource(cluster_id=cluster.id)
        token = cipher.decrypt(source.secret_encrypted) if source.secret_encrypted else secrets.token_urlsafe(32)
        source.secret_encrypted = cipher.encrypt(token)
        source.url, source.installed_at = url.strip().rstrip("/"), clock.now()
        uow.event_sources.save(source)
        audit.record(uow, clock=clock, actor=actor, action="events.installed", target=cluster.name,
                     detail={"url": source.url})
        # committed before the cluster is told, so the test (and any event) already finds the secret
        uow.commit()
    existing = {w.name for w in target.webhooks()}
    target.save_webhook(TARGET, url=templated, headers={"Content-Type": "application/json",
                                                        HEADER: "{{ secrets.token }}"},
                        body=BODY, secrets={"token": token}, comment=COMMENT, create=TARGET not in existing)
    matchers = {m.name for m in target.matchers()}
    target.save_matcher(MATCHER, targets=[TARGET], match_fields=MATCH_FIELDS, comment=COMMENT,
                        create=MATCHER not in matchers)
    target.test_target(TARGET)
    verb = "updated" if TARGET in existing else "created"
    return (f"cluster {cluster.name}: webhook target '{TARGET}' {verb} and matcher '{MATCHER}' set "
            f"(vzdump, package-updates); the test notification reached pvebot")


def status(uow_factory: UnitOfWorkFactory, *, cluster_name: str, target: ClusterNotifications) -> Status:
    """The cluster's webhook as pvebot stored it and as the cluster has it, the last push and the poller."""
    cluster = _cluster(uow_factory, cluster_name)
    assert cluster.id is not None
    with uow_factory(Scope.everything()) as uow:
        source = uow.event_sources.get(cluster.id) or EventSource(cluster_id=cluster.id)
        cursors = uow.event_sources.cursors(cluster.id)
    return Status(cluster=cluster.name, installed_at=source.installed_at if source.secret_encrypted else None,
                  url=source.url if source.secret_encrypted else None,
                  target=any(w.name == TARGET for w in target.webhooks()),
                  matcher=any(m.name == MATCHER for m in target.matchers()), last_push_at=source.last_push_at,
                  poller=source.poller, poller_until=source.poller_until, cursors=cursors)


def uninstall(uow_factory: UnitOfWorkFactory, *, clock: Clock, cluster_name: str, target: ClusterNotifications,
              actor: str) -> str:
    """Remove the matcher and the target from the cluster and forget the secret (pushes are 401 from now on).

    The pull reconciler goes on: events still arrive, within the poll interval.
    """
    cluster = _cluster(uow_factory, cluster_name)
    assert cluster.id is not None
    removed = []
    if any(m.name == MATCHER for m in target.matchers()):
        target.delete_matcher(MATCHER)
        removed.append(f"matcher '{MATCHER}'")
    if any(w.name == TARGET for w in target.webhooks()):
        target.delete_webhook(TARGET)
        removed.append(f"webhook target '{TARGET}'")
    with uow_factory(Scope.everything()) as uow:
        source = uow.event_sources.get(cluster.id)
        if source is not None:
            source.secret_encrypted, source.url, source.installed_at = None, None, None
            uow.event_sources.save(source)
        audit.record(uow, clock=clock, actor=actor, action="events.uninstalled", target=cluster.name)
        uow.commit()
    done = " and ".join(removed) if removed else "nothing was installed on the cluster"
    return f"cluster {cluster.name}: removed {done}; backup runs are still pulled every poll interval"


def describe(s: Status) -> list[str]:
    """``events status`` as lines."""
    push = (f"installed {s.installed_at:%Y-%m-%d %H:%M} UTC for {s.url}" if s.installed_at else "not installed")
    lines = [f"cluster {s.cluster}: push {push}",
             f"  on the cluster: target '{TARGET}' {'present' if s.target else 'missing'}, "
             f"matcher '{MATCHER}' {'present' if s.matcher else 'missing'}",
             f"  last push: {s.last_push_at:%Y-%m-%d %H:%M:%S} UTC" if s.last_push_at else "  last push: never"]
    if s.poller and s.poller_until:
        lines.append(f"  polled by {s.poller} (lease until {s.poller_until:%H:%M:%S} UTC)")
    else:
        lines.append("  polled by: no process yet")
    for node, since in s.cursors.items():
        read = datetime.fromtimestamp(since, UTC)
        lines.append(f"  node {node}: runs read up to those started at {read:%Y-%m-%d %H:%M} UTC")
    return lines
