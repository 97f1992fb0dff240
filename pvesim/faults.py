"""Faults a test can inject into the simulator: failing tasks, offline nodes, 500s, slowness, drops.

Each call arms a fault for a number of requests (or for the next matching task); the server
consumes them under the state lock, so a test thread can arm them while requests are in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pvesim.state import SimState
from pvesim.tasks import TaskEngine


@dataclass
class _Counted:
    count: int
    value: object = None
    prefix: str | None = None


class Faults:
    """``sim.faults``: arm faults from any thread."""

    def __init__(self, state: SimState, tasks: TaskEngine) -> None:
        self._state = state
        self._tasks = tasks
        self._http_500: list[_Counted] = []
        self._slow: list[_Counted] = []
        self._drops = 0
        # the server closes or reopens the node's own listener (see SimServer.node_url)
        self.node_listeners: list[Callable[[str, bool], None]] = []

    def fail_next_task(self, vmid: int | None = None, message: str = "simulated task failure") -> None:
        """The next task (for ``vmid``, or any) runs its log, then ends with ``message`` as exit status."""
        with self._state.lock:
            self._tasks.failures.append((vmid, message))

    def node_offline(self, node: str, offline: bool = True) -> None:
        """Node leaves (or rejoins) the cluster: its API URL refuses connections, its guests show ``unknown``."""
        with self._state.lock:
            self._state.nodes[node].online = not offline
        for listener in self.node_listeners:
            listener(node, not offline)

    def http_500(self, path_prefix: str | None = None, count: int = 1, message: str = "Internal Server Error") -> None:
        """The next ``count`` API calls (under ``path_prefix``, e.g. ``/cluster``) answer 500 ``message``."""
        with self._state.lock:
            self._http_500.append(_Counted(count=count, value=message, prefix=path_prefix))

    def slow(self, seconds: float = 2.0, count: int = 1) -> None:
        """The next ``count`` requests wait ``seconds`` before being answered."""
        with self._state.lock:
            self._slow.append(_Counted(count=count, value=seconds))

    def drop_connection(self, count: int = 1) -> None:
        """The next ``count`` requests get their connection closed without an answer."""
        with self._state.lock:
            self._drops += count

    # -- consumed by the server --------------------------------------------------------

    def take_drop(self) -> bool:
        with self._state.lock:
            if self._drops > 0:
                self._drops -= 1
                return True
            return False

    def take_delay(self) -> float:
        with self._state.lock:
            return float(_take(self._slow, None) or 0.0)

    def take_500(self, api_path: str) -> str | None:
        with self._state.lock:
            message = _take(self._http_500, api_path)
            return None if message is None else str(message)


def _take(armed: list[_Counted], path: str | None) -> object:
    for fault in armed:
        if fault.prefix is None or (path is not None and path.startswith(fault.prefix)):
            fault.count -= 1
            if fault.count <= 0:
                armed.remove(fault)
            return fault.value
    return None
