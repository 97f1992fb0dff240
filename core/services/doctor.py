"""``pvebot doctor``: one line per dependency and privilege, each with its fix.

The probes live where the technology lives (``bot/doctor.py`` wires them); this module holds
what they share: the shape of a check, how the report is written and scored, and which pvebot
features a Proxmox token's privileges allow, so that "this token cannot create backup schedules:
it lacks Sys.Modify on /" is said before a user meets it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum

from core.services import webhooks
from core.services.key_operations import NodeHealth


class Status(Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


MARK = {Status.OK: "✅", Status.WARN: "⚠️", Status.FAIL: "❌"}


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, how it went, and what to do about it."""

    name: str
    status: Status
    detail: str
    fix: str = ""


class Where(Enum):
    """Where Proxmox checks a privilege, as pvebot uses it."""

    POOL = "pool"  # every pool a company is bound to on the cluster: /pool/<pool>
    ROOT = "root"  # /
    STORAGE = "storage"  # /storage (backup targets)
    VMS = "vms"  # /vms (the shared templates a clone starts from)
    MAPPING = "mapping"  # /mapping/notifications (webhook targets and matchers)


@dataclass(frozen=True)
class Feature:
    """A pvebot feature and the privileges Proxmox asks of its token for it."""

    what: str  # completes "this token cannot …"
    needs: tuple[tuple[str, Where], ...]
    # without it pvebot is of no use on the cluster (❌); otherwise one feature is missing (⚠️)
    essential: bool = False
    # another set of privileges Proxmox accepts as well (its permission check's "or"); a blocked
    # feature is reported by what ``needs`` lacks, naming this set as the other way
    instead: tuple[tuple[str, Where], ...] = ()


# Privileges per endpoint from the PVE 8.4 API schema's permission checks (pvesim/apidata) and the
# backups facts file: POST /cluster/backup asks Sys.Modify on /; a webhook target asks Mapping.Modify
# on /mapping/notifications and Sys.Audit + Sys.Modify on / or, instead of both, Sys.AccessNetwork on /.
FEATURES: tuple[Feature, ...] = (
    Feature("see the companies' guests (vm list, vm status)", (("VM.Audit", Where.POOL),), essential=True),
    Feature("run power actions (start, shutdown, stop, reboot, reset, suspend, resume)",
            (("VM.PowerMgmt", Where.POOL),)),
    Feature("take, roll back or delete snapshots", (("VM.Snapshot", Where.POOL),)),
    Feature("clone templates into the companies' pools (vm create)",
            (("VM.Clone", Where.VMS), ("VM.Allocate", Where.POOL))),
    Feature("change cores, memory or disks of a new VM",
            (("VM.Config.CPU", Where.POOL), ("VM.Config.Memory", Where.POOL), ("VM.Config.Disk", Where.POOL))),
    Feature("delete VMs", (("VM.Allocate", Where.POOL),)),
    Feature("back up guests", (("VM.Backup", Where.POOL), ("Datastore.AllocateSpace", Where.STORAGE))),
    Feature("create backup schedules", (("Sys.Modify", Where.ROOT),)),
    Feature("set up the Proxmox event hook (notification webhook)",
            (("Mapping.Modify", Where.MAPPING), ("Sys.Audit", Where.ROOT), ("Sys.Modify", Where.ROOT)),
            instead=(("Mapping.Modify", Where.MAPPING), ("Sys.AccessNetwork", Where.ROOT))),
)


def privilege_paths(pools: Iterable[str]) -> list[str]:
    """The ACL paths whose effective privileges :func:`assess_privileges` needs, in a stable order.

    Args:
        pools: the pools companies are bound to on the cluster.

    Returns:
        ``/``, ``/storage``, ``/vms``, ``/mapping/notifications`` and ``/pool/<pool>`` for each pool.
    """
    return ["/", "/storage", "/vms", "/mapping/notifications", *(f"/pool/{pool}" for pool in sorted(set(pools)))]


def _paths(where: Where, pools: Sequence[str]) -> list[str]:
    if where is Where.POOL:
        return [f"/pool/{pool}" for pool in sorted(set(pools))]
    return {Where.ROOT: ["/"], Where.STORAGE: ["/storage"], Where.VMS: ["/vms"],
            Where.MAPPING: ["/mapping/notifications"]}[where]


def _missing(needs: Sequence[tuple[str, Where]], pools: Sequence[str], granted: Mapping[str, frozenset[str]]
             ) -> list[str]:
    missing: list[str] = []
    for privilege, where in needs:
        lacking = [p for p in _paths(where, pools) if privilege not in granted.get(p, frozenset())]
        if lacking:
            missing.append(f"{privilege} on {', '.join(lacking)}")
    return missing


def assess_privileges(*, cluster: str, pools: Sequence[str], granted: Mapping[str, frozenset[str]]) -> list[Check]:
    """Which features the token's effective privileges allow, one line per blocked feature.

    Args:
        cluster: the cluster's name, for the lines.
        pools: the pools companies are bound to on it.
        granted: effective privileges per path, as ``GET /access/permissions?path=…`` answered.

    Returns:
        One ✅ line listing what works when nothing is blocked; otherwise a line per blocked
        feature naming the missing privileges and where they are missing.
    """
    checks: list[Check] = []
    allowed: list[str] = []
    for feature in FEATURES:
        missing = _missing(feature.needs, pools, granted)
        if not missing or (feature.instead and not _missing(feature.instead, pools, granted)):
            allowed.append(feature.what.split(" (")[0])
            continue
        other = ""
        if feature.instead:
            other = " (or, instead, " + " and ".join(f"{p} on {', '.join(_paths(w, pools))}"
                                                      for p, w in feature.instead) + ")"
        checks.append(Check(
            name=f"cluster {cluster}: privileges",
            status=Status.FAIL if feature.essential else Status.WARN,
            detail=f"this token cannot {feature.what}: it lacks {'; '.join(missing)}{other}",
            fix=f"grant the token's role {', '.join(sorted({m.split(' on ')[0] for m in missing}))} there "
                "(Datacenter → Permissions), or accept that pvebot cannot do it",
        ))
    if not checks:
        checks.append(Check(name=f"cluster {cluster}: privileges", status=Status.OK,
                            detail="the token may " + "; ".join(allowed)))
    return checks


def exit_code(checks: Iterable[Check]) -> int:
    """1 when any check failed, else 0 (warnings do not fail)."""
    return 1 if any(c.status is Status.FAIL for c in checks) else 0


def render_text(checks: Iterable[Check]) -> str:
    """One line per check, its fix indented beneath it."""
    lines: list[str] = []
    for check in checks:
        lines.append(f"{MARK[check.status]} {check.name}: {check.detail}")
        if check.fix and check.status is not Status.OK:
            lines.append(f"   fix: {check.fix}")
    return "\n".join(lines)


def render_json(checks: Iterable[Check]) -> str:
    """The checks as a JSON document: ``{"ok": bool, "checks": [{name, status, detail, fix}]}``."""
    items = [{**asdict(c), "status": c.status.value} for c in checks]
    return json.dumps({"ok": not any(i["status"] == Status.FAIL.value for i in items), "checks": items},
                      ensure_ascii=False, indent=1)


def event_hook_checks(status: webhooks.Status) -> list[Check]:
    """The cluster's Proxmox event hook (``pvebot admin events``), as pvebot stored it and the cluster has it.

    Args:
        status: what ``events status`` reads.

    Returns:
        One line: installed and complete (✅), not installed (⚠️: events still arrive by pull), or
        installed on one side only (❌: pushes are lost or refused).
    """
    name, cluster = f"cluster {status.cluster}: event hook", status.cluster
    install = f"pvebot admin events install {cluster} --url {status.url or 'https://<pvebot public URL>'}"
    on_cluster = status.target and status.matcher
    if status.installed_at is None and not status.target:
        return [Check(name, Status.WARN, "not installed: backup and update events arrive by polling only, "
                      "up to PVEBOT_EVENTS_POLL_SECONDS late", f"run '{install}'")]
    if status.installed_at is None:
        return [Check(name, Status.FAIL, f"the cluster has webhook target '{webhooks.TARGET}' but pvebot holds no "
                      "secret for it: its pushes are refused", f"run '{install}' again, or "
                      f"'pvebot admin events uninstall {cluster}'")]
    if not on_cluster:
        lacking = " and ".join(what for what, there in ((f"target '{webhooks.TARGET}'", status.target),
                                                          (f"matcher '{webhooks.MATCHER}'", status.matcher))
                               if not there)
        return [Check(name, Status.FAIL, f"installed for {status.url}, but the cluster lacks {lacking}: no push "
                      "arrives", f"run '{install}' again")]
    if status.last_push_at is None:
        return [Check(name, Status.WARN, f"installed for {status.url}, but no push has reached pvebot yet",
                      f"check that every node reaches {status.url}/pve/events/{cluster}, then '{install}'")]
    return [Check(name, Status.OK, f"installed for {status.url}; last push {status.last_push_at:%Y-%m-%d %H:%M} UTC")]


_SSH_FIXES = (
    ("host key changed", "check the key on the node's console, then 'cluster trust {cluster} {node} <fingerprint>' "
                         "in chat"),
    ("no pinned host key", "'cluster trust {cluster} {node}' in chat, after checking the fingerprint"),
    ("no key on this cluster", "'cluster keys push {cluster} --password-env VAR' in chat"),
    ("missing from authorized_keys", "'cluster keys push {cluster} --password-env VAR' in chat"),
    ("login refused", "'cluster keys push {cluster} --password-env VAR' in chat"),
)


def ssh_checks(cluster: str, health: Sequence[NodeHealth]) -> list[Check]:
    """SSH key health of one cluster's nodes, one line per node.

    Args:
        cluster: the cluster's name.
        health: what :func:`core.services.key_operations.check_cluster` found.

    Returns:
        ✅ for a node pvebot logs in to with its key and finds its line on, else ❌ with the fix.
    """
    checks: list[Check] = []
    for h in health:
        name = f"cluster {cluster}: SSH {h.node}"
        if h.ok:
            checks.append(Check(name, Status.OK, f"pvebot's key logs in and is listed (key {h.key_age_days} d old)"))
            continue
        fix = next((f for words, f in _SSH_FIXES if words in h.problem),
                   "check that pvebot reaches the node's SSH port (clusters[].ssh.nodes) and 'cluster keys health'")
        checks.append(Check(name, Status.FAIL, h.problem, fix.format(cluster=cluster, node=h.node)))
    return checks
