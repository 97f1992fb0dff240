"""Dispatcher throughput and command-to-job-start latency on real Redis.

1. N ``vm start`` commands through the dispatcher (identity → parse → RBAC → audit → inventory →
   job record → enqueue on Redis), one after the other: commands per second and latency per command.
2. With those N jobs queued, W ``pvebot worker`` processes drain the queue: p50/p99 of the time from
   the command to the job starting (its claim), and jobs started per second.

The Proxmox side is the simulator over HTTPS on loopback, with one guest per command. Needs Redis
(PVEBOT_TEST_REDIS_URL, default redis://127.0.0.1:6379/0). Usage: python bench/commands.py [N] [WORKERS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import _path  # noqa: F401  (the repository first on sys.path)

from adapters.crypto import generate_key
from bot.bootstrap import build_app, open_storage
from bot.config import Settings
from bot.dispatch import RateLimiter
from core.chat import CommandRequest, ConversationRef
from core.model import JobState
from core.principal import Scope
from core.services import identity
from pvesim import PveSimulator
from tests.support import provision

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    redis_url = os.environ.get("PVEBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="pvebot-bench-"))
    secret = generate_key()
    sim = PveSimulator(task_seconds=0.05)
    sim.add_token("pvebot@pve!bot", secret)
    sim.add_node("pve1")
    sim.add_storage("local-lvm", content="images,rootdir")
    for i in range(n):
        sim.add_guest(vmid=1000 + i, name=f"vm-{i:05d}", node="pve1", pool="acme", status="stopped")
    server = sim.start()
    env = {
        # PVEBOT_BENCH_DATABASE_URL: an empty MySQL/MariaDB database instead of the embedded SQLite
        "PVEBOT_DATABASE_URL": os.environ.get("PVEBOT_BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}",
        "PVEBOT_SECRET_KEY": generate_key(),
        "PVEBOT_REDIS_URL": redis_url,
        "PVEBOT_QUEUE": f"pvebot-bench-{uuid.uuid4().hex[:8]}",
        "PVEBOT_LOG_LEVEL": "WARNING",
        "PVE_LAB_TOKEN": secret,
    }
    doc = f"""\
clusters:
  - {{name: lab, api_urls: ["{server.url}"], token_id: "pvebot@pve!bot", token_secret_env: PVE_LAB_TOKEN,
     tls: {{fingerprint: "{server.fingerprint}"}}}}
companies:
  - {{slug: acme, name: Acme, pools: [{{cluster: lab, pool: acme}}]}}
users:
  - {{email: bob@acme.example, name: Bob, role: user, company: acme}}
"""
    settings = Settings.from_mapping(env)
    if not settings.database_url.startswith("sqlite"):
        from adapters.sql import migrate
        from adapters.sql.uow import make_engine

        migrate.upgrade(make_engine(settings.database_url))
    storage = open_storage(settings)
    provision(storage, doc, env)
    app = build_app(settings, storage=storage)
    app.dispatcher.rate_limiter = RateLimiter(limit=10**9)  # measure the path, not the limiter
    key = identity.link_local(app.deps.uow_factory, "bob@acme.example", clock=app.deps.clock)
    conversation = ConversationRef(platform="shell", channel="bench")

    per_command: list[float] = []
    began = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        request = CommandRequest(identity=key, text=f"vm start vm-{i:05d}", conversation=conversation,
                                 request_id=uuid.uuid4().hex)
        answer = app.dispatcher.handle(request)
        assert answer.job_ids, answer.reply.text
        app.dispatcher.deliver(answer, lambda reply: None)
        per_command.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - began
    print(f"dispatcher: {n} commands (parse, RBAC, audit, inventory, job record, Redis enqueue) in {elapsed:.2f} s")
    print(f"  throughput: {n / elapsed:.0f} commands/s; per command p50 {percentile(per_command, .5) * 1000:.1f} ms,"
          f" p99 {percentile(per_command, .99) * 1000:.1f} ms")
    print(f"  Proxmox HTTP calls for the inventory: {sum(1 for r in sim.requests if 'resources' in r[1])}")

    worker_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    drain_start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--burst"], env=worker_env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    for p in procs:
        p.wait()
    drain = time.perf_counter() - drain_start
    with app.deps.uow_factory(Scope.everything()) as uow:
        jobs = uow.jobs.list(limit=n + 10)
    started = [j for j in jobs if j.started_at is not None]
    waits = [(j.started_at - j.created_at).total_seconds() for j in started if j.started_at]
    ok = sum(1 for j in jobs if j.state is JobState.SUCCEEDED)
    print(f"queue: {n} jobs queued on Redis, drained by {workers} 'pvebot worker' processes in {drain:.2f} s "
          f"({len(started) / drain:.0f} jobs started/s), {ok} succeeded")
    print(f"  command to job start: p50 {statistics.median(waits):.2f} s, p99 {percentile(waits, .99):.2f} s, "
          f"max {max(waits):.2f} s")
    app.close()
    sim.stop()


if __name__ == "__main__":
    main()
