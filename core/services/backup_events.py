"""A finished vzdump task as one notification event: one item per guest, each owned by its company.

Proxmox tells of a backup run per node and per task (a cluster-wide job is one task per node). The
per-guest outcome is only in the task log (``Starting Backup of VM``, ``ERROR: Backup of VM … failed -
reason``, ``WARN:``, ``archive file size:``, ``Finished Backup of VM … (hh:mm:ss)``), so the event is
built from the log. The owner of each guest comes from pvebot's own pool bindings, never from Proxmox
text: a guest in no bound pool (or gone since) belongs to no company and only provider channels hear of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from core.model import TaskInfo, Topic
from core.services.notifications import Event, Item

_START = re.compile(r"^INFO: Starting Backup of VM (\d+) ")
_FAILED = re.compile(r"^ERROR: Backup of VM (\d+) failed - (.*)$")
_FINISHED = re.compile(r"^INFO: Finished Backup of VM (\d+) \(([0-9:]+)\)")
_SIZE = re.compile(r"^INFO: archive file size: (.+)$")


def event_key(*, cluster: str, node: str, upid: str) -> str:
    """The one key of a run, however it reached pvebot (pushed or pulled): ``vzdump:<cluster>:<node>:<upid>``."""
    return f"vzdump:{cluster}:{node}:{upid}"


@dataclass(frozen=True)
class Owner:
    """Who a VMID of the run belongs to now, as pvebot's pool bindings say."""

    name: str
    company_id: int | None


@dataclass
class _Guest:
    vmid: int
    failed: str | None = None
    warning: str | None = None
    size: str = ""
    took: str = ""


def _guests(lines: list[str]) -> list[_Guest]:
    found: dict[int, _Guest] = {}
    current: _Guest | None = None
    for line in lines:
        if m := _START.match(line):
            current = found.setdefault(int(m.group(1)), _Guest(int(m.group(1))))
        elif m := _FAILED.match(line):
            found.setdefault(int(m.group(1)), _Guest(int(m.group(1)))).failed = m.group(2).strip()[:300]
        elif m := _FINISHED.match(line):
            found.setdefault(int(m.group(1)), _Guest(int(m.group(1)))).took = m.group(2)
        elif current is not None and line.startswith("WARN: ") and current.warning is None:
            current.warning = line.removeprefix("WARN: ").strip()[:300]
        elif current is not None and (m := _SIZE.match(line)):
            current.size = m.group(1).strip()[:40]
    return list(found.values())


def _detail(g: _Guest, *, task_status: str) -> tuple[str, str, bool]:
    if g.failed is not None:
        return "failed", g.failed, True
    if not g.took:
        # started and never finished (the task was stopped, the node went down): no success to report
        return "failed", f"did not finish ({task_status[:200] or 'the task ended without saying why'})", True
    done = ", ".join(x for x in (g.took, g.size) if x)
    if g.warning is not None:
        return "warnings", f"{g.warning}" + (f" ({done})" if done else ""), False
    return "ok", done, False


def run_event(*, cluster: str, task: TaskInfo, lines: list[str], owners: dict[int, Owner]) -> Event:
    """The event of a finished vzdump ``task`` of ``cluster`` whose log is ``lines``.

    Args:
        cluster: the cluster's name in pvebot.
        task: the finished task (its status is ``OK``, ``WARNINGS: n`` or the error).
        lines: its log, in order.
        owners: VMID → the guest's name and owning company; a VMID not here belongs to no company.

    Returns:
        One event keyed by cluster, node and UPID, with one item per guest the log names.
    """
    items = []
    for g in sorted(_guests(lines), key=lambda g: g.vmid):
        owner = owners.get(g.vmid, Owner(name="", company_id=None))
        status, detail, failed = _detail(g, task_status=task.status or "")
        items.append(Item(cluster=cluster, vmid=g.vmid, name=owner.name, company_id=owner.company_id,
                          failed=failed, status=status, detail=detail))
    status = task.status or ""
    ok = status == "OK" or status.startswith("WARNINGS:")
    when = datetime.fromtimestamp(task.starttime, UTC).strftime("%Y-%m-%d %H:%M UTC")
    title = f"Backup on {cluster}/{task.node} at {when}"
    text = "" if ok or items else f"the backup run failed: {status[:200]}"
    return Event(topic=Topic.BACKUPS, key=event_key(cluster=cluster, node=task.node, upid=task.upid),
                 title=title if ok or items else f"❌ {title} failed", text=text,
                 failed=not ok, items=tuple(items))
