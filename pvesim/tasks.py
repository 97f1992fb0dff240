"""Asynchronous actions as Proxmox runs them: a UPID, a task log, and an exit status at the end.

A task first takes the guest's lock file (waiting like ``lock_config`` does, then failing with
``can't lock file ... - got timeout``), runs its steps on the server's event loop, and ends
``OK`` or with the error as ``exitstatus`` and a last log line ``TASK ERROR: ...``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pvesim.state import ApiError, SimGuest, SimState


class TaskFailed(Exception):
    """Ends a task with this message as its exit status."""


@dataclass
class SimTask:
    upid: str
    node: str
    type: str
    id: str
    user: str
    pid: int
    pstart: int
    starttime: int
    log: list[str] = field(default_factory=list)
    exitstatus: str | None = None
    endtime: int | None = None
    handle: asyncio.Task[None] | None = None
    injected: str | None = None  # a failure armed by the test, raised once the log is written

    @property
    def running(self) -> bool:
        return self.exitstatus is None

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "upid": self.upid,
            "node": self.node,
            "pid": self.pid,
            "pstart": self.pstart,
            "starttime": self.starttime,
            "type": self.type,
            "id": self.id,
            "user": self.user,
            "status": "running" if self.running else "stopped",
        }
        if not self.running:
            data["exitstatus"] = self.exitstatus
        return data


Work = Callable[[SimTask], Awaitable[None]]


class TaskEngine:
    """Starts and tracks tasks; ``task_seconds`` is how long each one takes."""

    def __init__(self, state: SimState, *, task_seconds: float, lock_timeout: float) -> None:
        self.state = state
        self.task_seconds = task_seconds
        self.lock_timeout = lock_timeout
        self.tasks: dict[str, SimTask] = {}
        # PIDs and pstart (jiffies since boot) only need to look like Proxmox's
        self._pids = itertools.count(0x1000 + os.getpid() % 0x1000)
        self._pstart = 0x1A2B3C
        self.failures: list[tuple[int | None, str]] = []

    def _upid(self, *, node: str, type_: str, id_: str, user: str) -> SimTask:
        pid = next(self._pids)
        self._pstart += 7
        start = int(time.time())
        upid = f"UPID:{node}:{pid:08X}:{self._pstart:08X}:{start:08X}:{type_}:{id_}:{user}:"
        return SimTask(upid=upid, node=node, type=type_, id=id_, user=user, pid=pid, pstart=self._pstart,
                       starttime=start)

    def start(
        self, *, node: str, type_: str, id_: str, user: str, work: Work, guest: SimGuest | None = None,
        config_lock: str | None = None,
    ) -> str:
        """Start ``work`` as a task; call with ``state.lock`` held, on the server loop."""
        task = self._upid(node=node, type_=type_, id_=id_, user=user)
        self.tasks[task.upid] = task
        task.injected = self._take_failure(guest.vmid if guest else None)
        task.handle = asyncio.get_running_loop().create_task(
            self._run(task, work, guest=guest, config_lock=config_lock)
        )
        return task.upid

    def _take_failure(self, vmid: int | None) -> str | None:
        for i, (want, message) in enumerate(self.failures):
            if want is None or want == vmid:
                del self.failures[i]
                return message
        return None

    async def _run(
        self, task: SimTask, work: Work, *, guest: SimGuest | None, config_lock: str | None
    ) -> None:
        holding = locked_config = False
        try:
            if guest is not None:
                await self._take_lock_file(task, guest)
                holding = True
                if config_lock:
                    with self.state.lock:
                        if guest.lock:
                            raise TaskFailed(f"{guest.type_label} {guest.vmid} is locked ({guest.lock})")
                        guest.lock, locked_config = config_lock, True
            await work(task)
            self._raise_injected(task)
            self._finish(task, "OK")
        except TaskFailed as e:
            self._finish(task, str(e))
        except ApiError as e:
            self._finish(task, e.message)
        except asyncio.CancelledError:
            self._finish(task, "interrupted by signal")
        finally:
            if guest is not None and holding:
                with self.state.lock:
                    guest.busy_upid = None
                    if locked_config:
                        guest.lock = None

    async def _take_lock_file(self, task: SimTask, guest: SimGuest) -> None:
        deadline = time.monotonic() + self.lock_timeout
        while True:
            with self.state.lock:
                if guest.busy_upid is None:
                    guest.busy_upid = task.upid
                    return
            if time.monotonic() >= deadline:
                raise TaskFailed(f"can't lock file '{guest.lock_file}' - got timeout")
            await asyncio.sleep(0.01)

    def _finish(self, task: SimTask, exitstatus: str) -> None:
        with self.state.lock:
            if exitstatus == "OK" or exitstatus.startswith("WARNINGS: "):
                task.log.append(f"TASK {exitstatus}")
            else:
                task.log.append(f"TASK ERROR: {exitstatus}")
            task.exitstatus = exitstatus
            task.endtime = int(time.time())

    async def progress(self, task: SimTask, lines: list[str]) -> None:
        """Write ``lines`` spread over the task's duration, then fail if a failure was armed.

        Work calls this before changing state, so an injected failure leaves the state as it was.
        """
        if not lines:
            await asyncio.sleep(self.task_seconds)
        pause = self.task_seconds / max(len(lines), 1)
        for line in lines:
            with self.state.lock:
                task.log.append(line)
            await asyncio.sleep(pause)
        self._raise_injected(task)

    @staticmethod
    def _raise_injected(task: SimTask) -> None:
        if task.injected:
            message, task.injected = task.injected, None
            raise TaskFailed(message)

    def find(self, upid: str, *, node: str) -> SimTask:
        task = self.tasks.get(upid)
        if task is None or task.node != node:
            raise ApiError(500, "no such task")
        return task

    def cancel(self, task: SimTask) -> None:
        if task.running and task.handle is not None:
            task.handle.cancel()


def percent_lines(template: str, *, total: int, steps: int = 10) -> list[str]:
    """Progress lines at ``steps`` even points; ``template`` gets done, total and pct."""
    return [template.format(done=total * i // steps, total=total, pct=100 * i / steps) for i in range(steps + 1)]
