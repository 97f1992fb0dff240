"""``POST /pve/events/<cluster>``: a Proxmox webhook says a node has news; pvebot pulls that node
(its backup runs, and its package updates: the matcher sends ``package-updates`` too).

Proxmox authenticates with nothing but the secret header pvebot installed (``pvebot admin events
install``); it is compared in constant time and a missing or wrong one is 401, with nothing done. A
right one is answered 202 at once: the pull runs on this process's own thread, off the request path.
Proxmox sends the notification from inside the vzdump task, before the task has ended, so the pull
looks again a few times (1, 2, 4, 8, 16 s) while a vzdump task of the node still runs; whatever is
still missing after that the poller reads on its next pass. A push carries no per-guest results and
no task id, so nothing of its body is trusted beyond the node name; the event is the pull's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import re
import threading
import time

from aiohttp import web

from core.errors import BotError
from core.model import Cluster
from core.ports import SecretCipher
from core.services import event_sources, node_updates
from core.services.deps import Deps

log = logging.getLogger(__name__)
HEADER = "X-Pvebot-Token"
_NODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$")
_BACKOFF = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
_MAX_BODY = 4 * 1024 * 1024  # a vzdump message carries up to 1 MiB of log


class PushedPulls:
    """A thread that runs the pulls pushes ask for, one per cluster and node at a time, each bounded."""

    def __init__(self, deps: Deps, *, backoff: tuple[float, ...] = _BACKOFF, limit: int = 1000) -> None:
        self.deps, self.backoff = deps, backoff
        self._queue: queue.Queue[tuple[Cluster, str | None] | None] = queue.Queue(maxsize=limit)
        self._pending: set[tuple[str, str | None]] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="pvebot-pushed-pulls", daemon=True)

    def start(self) -> PushedPulls:
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def trigger(self, cluster: Cluster, node: str | None) -> bool:
        """Ask for a pull of ``node`` (every node: None); False when one is already waiting or the queue is full."""
        key = (cluster.name, node)
        with self._lock:
            if key in self._pending:
                return False
            try:
                self._queue.put_nowait((cluster, node))
            except queue.Full:
                log.warning("too many webhook pulls waiting; the poller reads cluster %s on its next pass",
                            cluster.name)
                return False
            self._pending.add(key)
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            cluster, node = item
            with self._lock:
                self._pending.discard((cluster.name, node))
            try:
                self._pull(cluster, node)
            except Exception as e:
                log.warning("the pull a webhook of cluster %s asked for failed: %s", cluster.name,
                            getattr(e, "user_message", type(e).__name__))

    def _pull(self, cluster: Cluster, node: str | None) -> None:
        nodes = [node] if node else event_sources.nodes_of(self.deps, cluster)
        # the body is not trusted to say which kind of news it is: the node's updates are read too (a
        # package-updates notification, from the daily pveupdate); a set announced already is not again
        for n in nodes:
            try:
                node_updates.check_node(self.deps, cluster, n)
            except BotError as e:
                log.warning("the updates check a webhook of cluster %s asked for failed: %s", cluster.name,
                            e.user_message)
        for pause in self.backoff:
            time.sleep(pause)
            running = sum(event_sources.pull_pushed(self.deps, cluster, n).running for n in nodes)
            if not running:
                return


def _node_of(request: web.Request, body: bytes) -> str | None:
    node = request.query.get("node")
    if node is None and body:
        try:
            data = json.loads(body)
            fields = data.get("fields") if isinstance(data, dict) else None
            node = fields.get("hostname") if isinstance(fields, dict) else None
        except ValueError:
            node = None
    return str(node) if node else None


def route(deps: Deps, cipher: SecretCipher, pulls: PushedPulls) -> web.RouteDef:
    """The webhook route, to add to ``pvebot serve``'s application."""

    async def pushed(request: web.Request) -> web.Response:
        cluster_name = request.match_info["cluster"]
        token = request.headers.get(HEADER)
        cluster = await asyncio.to_thread(event_sources.pushed_by, deps, cipher=cipher, cluster_name=cluster_name,
                                          token=token)
        if cluster is None:
            # an unknown cluster, one without a webhook, a missing and a wrong secret: the same answer
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await request.content.read(_MAX_BODY)
        node = _node_of(request, body)
        if node is not None and not _NODE.match(node):
            return web.json_response({"error": "bad node name"}, status=400)
        pulls.trigger(cluster, node)
        return web.json_response({"status": "accepted"}, status=202)

    return web.post("/pve/events/{cluster}", pushed)
