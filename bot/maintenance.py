"""Housekeeping every pvebot process runs in the background: dead, lost and unstarted jobs, expired approvals,
notifications to send, backup runs to pull, the clusters' periodic checks, and ``--vms`` backup schedules
narrowed to their company's guests."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from adapters import outages
from core.model import Cluster
from core.services import approvals, event_sources, jobs, key_operations, node_updates, outbox, schedule_reconcile
from core.services.deps import Deps

log = logging.getLogger(__name__)
# a job handed to Redis that Redis no longer has after this long is handed over again
REQUEUE_AFTER = timedelta(seconds=30)


def sweep(
    deps: Deps,
    *,
    stale_after: timedelta,
    start_timeout: timedelta | None = None,
    owner_gone: Callable[[str], bool] | None = None,
    requeue_after: timedelta | None = REQUEUE_AFTER,
) -> int:
    """One pass: fail jobs whose worker died or that no worker took, hand over again what Redis lost,
    expire approvals past their time."""
    count = jobs.reap(deps, stale_after=stale_after, start_timeout=start_timeout, owner_gone=owner_gone,
                      requeue_after=requeue_after)
    count += approvals.expire_due(deps)
    return count


class Maintenance:
    """Runs :func:`sweep` at start and then every ``interval`` seconds in a daemon thread.

    Every pass, in either queue mode, fails what waited longer than ``start_timeout`` for a
    worker and what an embedded queue of a process that has ended still held (``owner_gone``);
    a live process's waiting jobs are left to it.
    """

    def __init__(
        self,
        deps: Deps,
        *,
        interval: float = 10.0,
        stale_after: timedelta = timedelta(seconds=60),
        start_timeout: timedelta = timedelta(seconds=600),
        owner_gone: Callable[[str], bool] | None = None,
        check_interval: float = 0,
        schedule_interval: float = 0,
        events: event_sources.PollPolicy | None = None,
        owner: str = "",
        sending: outbox.Policy | None = None,
    ) -> None:
        self.deps, self.interval = deps, interval
        self.stale_after, self.start_timeout, self.owner_gone = stale_after, start_timeout, owner_gone
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pvebot-maintenance", daemon=True)
        # the notification outbox: every process sends it; claims keep two from sending one row
        self._sender = threading.Thread(target=self._send_loop, name="pvebot-notify", daemon=True)
        self.send_interval = 0.5
        # the clusters' package updates and pvebot's SSH keys: a slow check must not hold up the sweep
        self.check_interval = check_interval
        self._checker = threading.Thread(target=self._check_loop, name="pvebot-cluster-checks", daemon=True)
        # --vms backup jobs narrowed to their company's guests: often, as Proxmox's scheduler may run them any time
        self.schedule_interval = schedule_interval
        self._reconciler = threading.Thread(target=self._schedule_loop, name="pvebot-schedules", daemon=True)
        self.sending = sending or outbox.Policy()
        # backup runs pulled from each cluster's task history; the lease names this process
        self.events = events or event_sources.PollPolicy()
        self.owner = owner or f"{socket.gethostname()[:40]}:{os.getpid()}"
        self._poller = threading.Thread(target=self._poll_loop, name="pvebot-events", daemon=True)

    def sweep(self) -> int:
        return sweep(self.deps, stale_after=self.stale_after, start_timeout=self.start_timeout,
                     owner_gone=self.owner_gone)

    def start(self) -> Maintenance:
        self._sweep_logged()
        self._thread.start()
        self._sender.start()
        if self.check_interval > 0:
            self._checker.start()
        if self.schedule_interval > 0:
            self._reconciler.start()
        self._poller.start()
        return self

    def check_clusters(self) -> int:
        """One round of the periodic cluster checks: updates, then SSH key health; updates queued plus SSH problems."""
        # one process checks a cluster however many run: the one holding its lease (see event_sources.hold)
        queued = node_updates.check_all(self.deps, only=self._holds)
        if self.deps.ssh is not None:
            queued += sum(1 for h in key_operations.check_all(self.deps, only=self._holds) if not h.ok)
        return queued

    def reconcile_schedules(self) -> list[schedule_reconcile.Reconciled]:
        """One pass over every cluster this process holds the lease of: drop other companies' VMIDs from jobs."""
        return schedule_reconcile.reconcile_all(self.deps, only=self._holds)

    def _holds(self, cluster: Cluster) -> bool:
        """Whether this process holds (or now takes) the cluster's lease: one process checks each cluster."""
        return event_sources.hold(self.deps, cluster, owner=self.owner, lease=self.events.lease)

    def _schedule_loop(self) -> None:
        wait = 0.0  # at start too: a VM may have changed hands while no process ran
        while not self._stop.wait(wait):
            wait = self.schedule_interval
            try:
                self.reconcile_schedules()
            except Exception as e:
                _log_failure(e, waiting="backup schedule checks wait", failed="the backup schedule checks failed")

    def _check_loop(self) -> None:
        while not self._stop.wait(self.check_interval):
            try:
                self.check_clusters()
            except Exception:
                log.exception("the periodic cluster checks failed")

    def _sweep_logged(self) -> None:
        try:
            self.sweep()
        except Exception:
            log.exception("maintenance sweep failed")

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sweep_logged()

    def _send_loop(self) -> None:
        quiet_until = 0.0
        while not self._stop.wait(self.send_interval):
            try:
                outbox.deliver_due(self.deps, policy=self.sending)
            except Exception as e:
                # twice a second during an outage would bury the log: one line a minute says as much
                now = time.monotonic()
                if now < quiet_until:
                    continue
                quiet_until = now + 60
                _log_failure(e, waiting="notifications wait", failed="sending notifications failed")

    def poll_events(self) -> int:
        return event_sources.poll(self.deps, owner=self.owner, policy=self.events)

    def _poll_loop(self) -> None:
        wait = 0.0  # the first poll at start: what happened while no process ran
        while not self._stop.wait(wait):
            wait = self.events.interval.total_seconds()
            try:
                self.poll_events()
            except Exception as e:
                _log_failure(e, waiting="backup events wait", failed="polling backup events failed")

    def stop(self) -> None:
        self._stop.set()
        try:
            event_sources.release(self.deps, owner=self.owner)
        except Exception:
            log.warning("could not release the backup-event poller leases; they expire on their own")


def _log_failure(e: Exception, *, waiting: str, failed: str) -> None:
    """A known outage (database, Redis, a cluster) is one line saying what waits; anything else is a traceback."""
    outage = outages.describe(e)
    if outage is not None:
        log.warning("%s: %s", waiting, outage)
    else:
        log.exception(failed)
