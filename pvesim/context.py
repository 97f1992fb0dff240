"""What every simulated endpoint gets: the request as parsed and the simulator it acts on.

Endpoints register with :func:`route` under the schema path; ``{kind}`` stands for both
``qemu`` and ``lxc``. The HTTP layer has already authenticated and validated the call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pvesim.state import ApiError, SimGuest, SimState
from pvesim.tasks import TaskEngine


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # the schema path, e.g. /nodes/{node}/qemu/{vmid}/config
    path_params: dict[str, str]
    params: dict[str, str]
    user: str  # the token id, as PVE writes it into UPIDs
    privileges: frozenset[str] | None
    # array parameters, every value (``params`` holds the first)
    lists: dict[str, list[str]] = field(default_factory=dict)

    def values(self, name: str) -> list[str]:
        return self.lists.get(name, [self.params[name]] if name in self.params else [])

    @property
    def node(self) -> str:
        return self.path_params["node"]

    @property
    def vmid(self) -> int:
        return int(self.path_params["vmid"])

    @property
    def kind(self) -> str:
        return "lxc" if "/lxc" in self.path else "qemu"

    def flag(self, name: str) -> bool:
        return self.params.get(name) == "1"


@dataclass
class SimContext:
    state: SimState
    tasks: TaskEngine

    def guest(self, call: Call) -> SimGuest:
        return self.state.guest(node=call.node, kind=call.kind, vmid=call.vmid)

    async def wait_lock_file(self, guest: SimGuest) -> None:
        """Synchronous API calls wait for a running task's lock like ``lock_config`` does."""
        deadline = time.monotonic() + self.tasks.lock_timeout
        while True:
            with self.state.lock:
                if guest.busy_upid is None:
                    return
            if time.monotonic() >= deadline:
                raise ApiError(500, f"can't lock file '{guest.lock_file}' - got timeout")
            await asyncio.sleep(0.01)


@dataclass(frozen=True)
class Listing:
    """A list answer that also carries PVE's ``total`` beside ``data``."""

    data: list[Any]
    total: int


def check_config_lock(guest: SimGuest) -> None:
    if guest.lock:
        raise ApiError(500, f"{guest.type_label} {guest.vmid} is locked ({guest.lock})")


Handler = Callable[[SimContext, Call], Awaitable[Any]]
ROUTES: dict[tuple[str, str], Handler] = {}


def route(method: str, path: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        for kind in ("qemu", "lxc") if "{kind}" in path else ("",):
            ROUTES[(method, path.replace("{kind}", kind))] = handler
        return handler

    return register


def render_bytes(n: float) -> str:
    """Sizes the way PVE::Tools::render_bytes prints them in task logs."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.1f} {units[i]}" if i else f"{n:.1f} B"
