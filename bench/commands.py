"""Dispatcher cost per command at 100 and at 20,000 guests, and command-to-job-start latency on real Redis.

1. For each inventory size (``--guests``, default 100 and 20000), N commands of each kind through the
   dispatcher, one after the other, the sizes visited there and back (100, 20000, 100: the machine's
   drift over the run weighs on each size alike, and the two visits of 100 share its N): ``vm status``,
   ``vm start`` (identity → parse → RBAC → audit → inventory → job record → enqueue on Redis) and
   ``vm list --search``. Printed per kind: commands/s,
   p50/p99 per command, SQL statements per command (counted with SQLAlchemy's
   ``before_cursor_execute`` event) and the CPU milliseconds per command of the bot (this process),
   of the simulated Proxmox (its process) and of the MariaDB and Redis servers when they run on this
   machine (from /proc; SQLite's is the bot's). "max/s" is what this machine's cores could do if CPU
   were all that bounded them: the cores divided by the four together. The caller's
   company (acme) owns the same 50 guests at every size; the other guests belong to nine other
   companies, so a bigger inventory is other people's.
2. With ``--concurrency C`` (default 8), the three kinds again, interleaved, from C threads at once as
   ``pvebot serve`` runs them (one thread per command in flight): commands/s of the process.
3. With ``--processes P`` (default 0: skipped), P processes of their own (as P ``pvebot serve``
   processes on one database would be), all at once: first each kind alone, then the three kinds
   interleaved; the commands/s of all of them together, from the first start to the last end, and
   the same CPU columns per command (the bot's summed over the processes).
4. With ``--workers W`` (default 0: skipped), W ``pvebot worker`` processes then drain the queued
   ``vm start`` jobs: p50/p99 of the time from the command to the job starting (its claim).

The Proxmox side is the simulator over HTTPS on loopback, in a process of its own. Needs Redis
(PVEBOT_TEST_REDIS_URL, default redis://127.0.0.1:6379/0); PVEBOT_BENCH_DATABASE_URL: an empty
MySQL/MariaDB database instead of the embedded SQLite.

    .venv/bin/python bench/commands.py [--commands 300] [--guests 100,20000] [--concurrency 8] [--processes 0]
                                       [--workers 0] [--profile FILE]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import cProfile
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import _path  # noqa: F401  (the repository first on sys.path)
from sqlalchemy import event

from adapters.crypto import generate_key
from bot.bootstrap import App, build_app, open_storage
from bot.config import Settings
from bot.dispatch import RateLimiter
from core.chat import CommandRequest, ConversationRef, IdentityKey
from core.model import JobState
from core.principal import Scope
from core.services import identity
from pvesim import PveSimulator
from tests.support import provision

ROOT = Path(__file__).resolve().parents[1]
OTHERS = tuple(f"co{i:02d}" for i in range(1, 10))  # the other companies
MINE = 50  # acme's guests, at every inventory size
BENCH_CONVERSATION = ConversationRef(platform="shell", channel="bench")
MIXED = "all three"  # the three kinds of commands taken in turn
WARM_BEFORE_START = 2.0  # seconds before the common start that each process warms up again


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class StatementCounter:
    """Counts the SQL statements the engine sends, whoever sends them."""

    def __init__(self, engines: tuple[Any, ...]) -> None:
        self.count = 0
        for engine in engines:
            event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1


def add_guests(sim: PveSimulator, *, first: int, upto: int) -> None:
    """Guests ``first`` .. ``upto - 1`` of the population: acme's 50 first, then the other companies'."""
    for i in range(first, upto):
        pool = "acme" if i < MINE else OTHERS[i % len(OTHERS)]
        sim.add_guest(vmid=1000 + i, name=f"{pool}-{i:05d}", node=f"pve{1 + i % 3}", pool=pool,
                      status="stopped" if i % 2 else "running", tags=("bench",))


def process_cpu(pid: int) -> float:
    """The CPU seconds process ``pid`` has used so far (Linux: from /proc; elsewhere NaN)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def local_server(names: tuple[str, ...], url: str) -> int | None:
    """The pid of the server process called one of ``names``, if ``url`` points at this machine."""
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in names:
                return int(comm.parent.name)
        except OSError:
            continue
    return None


class Servers:
    """The CPU the database and Redis servers spend, when they run on this machine: with the bot's and
    the simulator's, what a command costs the machine in all (SQLite runs inside the bot)."""

    def __init__(self, *, database_url: str, redis_url: str) -> None:
        self.embedded_db = database_url.startswith("sqlite")
        self.db = None if self.embedded_db else local_server(("mariadbd", "mysqld"), database_url)
        self.redis = local_server(("redis-server",), redis_url)

    def cpu_seconds(self) -> tuple[float, float]:
        """(database, Redis) CPU seconds so far: 0 for SQLite, NaN for a server on another machine."""
        db = 0.0 if self.embedded_db else float("nan") if self.db is None else process_cpu(self.db)
        return db, float("nan") if self.redis is None else process_cpu(self.redis)


class Simulator:
    """The simulated cluster in a process of its own, so that its work is not counted as ours (as in production)."""

    def __init__(self, *, size: int, secret: str) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(size)], env={**os.environ,
                                     "BENCH_SIM_SECRET": secret}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        self.url, self.fingerprint = self.proc.stdout.readline().split()

    def cpu_seconds(self) -> float:
        return process_cpu(self.proc.pid)

    def stop(self) -> int:
        """Stop it; how many inventory fetches it answered."""
        out, _ = self.proc.communicate("")
        return int(out.strip() or 0)


def serve(size: int) -> None:
    sim = PveSimulator(task_seconds=0.05)
    sim.add_token("pvebot@pve!bot", os.environ["BENCH_SIM_SECRET"])
    for node in ("pve1", "pve2", "pve3"):
        sim.add_node(node)
    sim.add_storage("local-lvm", content="images,rootdir")
    for pool in ("acme", *OTHERS):
        sim.add_pool(pool)
    add_guests(sim, first=0, upto=size)
    server = sim.start()
    print(server.url, server.fingerprint, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    print(sum(1 for r in sim.requests if r.path.endswith("/cluster/resources")), flush=True)
    sim.stop()


def provisioning_doc(server: Any) -> str:
    pools = "\n".join(f"  - {{slug: {c}, name: {c.upper()}, pools: [{{cluster: lab, pool: {c}}}]}}" for c in OTHERS)
    return f"""\
clusters:
  - {{name: lab, api_urls: ["{server.url}"], token_id: "pvebot@pve!bot", token_secret_env: PVE_LAB_TOKEN,
     tls: {{fingerprint: "{server.fingerprint}"}}}}
companies:
  - {{slug: acme, name: Acme, pools: [{{cluster: lab, pool: acme}}]}}
{pools}
users:
  - {{email: bob@acme.example, name: Bob, role: user, company: acme}}
"""


def timed_command(app: App, key: IdentityKey, text: str, check: Callable[[Any], bool]) -> float:
    """One command through the dispatcher, its answer checked and delivered; seconds it took."""
    t0 = time.perf_counter()
    request = CommandRequest(identity=key, text=text, conversation=BENCH_CONVERSATION, request_id=uuid.uuid4().hex)
    answer = app.dispatcher.handle(request)
    assert check(answer), answer.reply.text
    app.dispatcher.deliver(answer, lambda reply: None)
    return time.perf_counter() - t0


def mixed(app: App, key: IdentityKey, i: int) -> float:
    """The ``i``-th command of the three kinds taken in turn."""
    kinds = list(KINDS.values())
    text, check = kinds[i % len(kinds)]
    return timed_command(app, key, text(i // len(kinds)), check)


@dataclass(frozen=True)
class Cpu:
    """CPU seconds per command of the bot (its threads included), the simulated Proxmox, the database
    server and Redis."""

    bot: float
    sim: float
    db: float
    redis: float

    def ceiling(self) -> float:
        """The commands/s this machine's cores could do if CPU were all that bounded them."""
        return (os.cpu_count() or 1) / (self.bot + self.sim + self.db + self.redis)

    def columns(self) -> str:
        return (f"{self.bot * 1000:>8.2f} {self.sim * 1000:>8.2f} {self.db * 1000:>8.2f} {self.redis * 1000:>8.2f} "
                f"{self.ceiling():>7.0f}")


CPU_HEADER = f"{'bot CPU':>8} {'sim CPU':>8} {'db CPU':>8} {'Redis':>8} {'max/s':>7}"


@dataclass(frozen=True)
class Machine:
    """Where the CPU that is not the bot's goes: the simulator, and the servers when they are local."""

    sim: Simulator
    servers: Servers

    def others(self) -> tuple[float, float, float]:
        return self.sim.cpu_seconds(), *self.servers.cpu_seconds()

    def per_command(self, bot: float, before: tuple[float, float, float], n: int) -> Cpu:
        after = self.others()
        sim, db, redis = ((a - b) / n for a, b in zip(after, before, strict=True))
        return Cpu(bot / n, sim, db, redis)


@dataclass(frozen=True)
class KindRun:
    latencies: list[float]
    elapsed: float  # seconds
    statements: float  # SQL statements per command
    cpu: Cpu


def run_kind(app: App, key: IdentityKey, counter: StatementCounter, machine: Machine, *,
             text: Callable[[int], str], n: int, check: Callable[[Any], bool]) -> KindRun:
    """Run ``n`` commands, one after the other."""
    statements, bot_cpu, others = counter.count, time.process_time(), machine.others()
    began = time.perf_counter()
    per_command = [timed_command(app, key, text(i), check) for i in range(n)]
    elapsed = time.perf_counter() - began
    cpu = machine.per_command(time.process_time() - bot_cpu, others, n)
    return KindRun(per_command, elapsed, (counter.count - statements) / n, cpu)


def phases(sizes: list[int]) -> list[tuple[int, int]]:
    """The sizes in the order they run, each with the number of visits it shares its commands among.

    There and back (100, 20000, 100): a shared virtual machine's speed drifts by tens of per cent
    within minutes, and a run that measured one size after the other would read that drift as a
    difference between the sizes. The turning size runs once, with all of its commands.
    """
    order = sizes + sizes[-2::-1]
    return [(size, order.count(size)) for size in order]


def pooled(runs: list[KindRun]) -> KindRun:
    """One kind at one size, over all of its visits."""
    counts = [len(r.latencies) for r in runs]
    total = sum(counts)

    def mean(values: list[float]) -> float:
        return sum(v * c for v, c in zip(values, counts, strict=True)) / total

    cpu = Cpu(*(mean([getattr(r.cpu, f) for r in runs]) for f in ("bot", "sim", "db", "redis")))
    return KindRun([x for r in runs for x in r.latencies], sum(r.elapsed for r in runs),
                   mean([r.statements for r in runs]), cpu)


def run_concurrently(app: App, key: IdentityKey, *, n: int, threads: int) -> tuple[float, list[float]]:
    """``n`` commands of each kind, interleaved, ``threads`` at a time; (commands/s, latencies)."""
    began = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        latencies = list(pool.map(lambda i: mixed(app, key, i), range(n * len(KINDS))))
    return len(latencies) / (time.perf_counter() - began), latencies


def run_processes(env: dict[str, str], machine: Machine, *, n: int, processes: int,
                  kind: str = MIXED) -> tuple[float, list[float], Cpu]:
    """``processes`` children, each ``n`` commands of ``kind`` (or of each kind, interleaved); (commands/s of all,
    latencies, CPU per command)."""
    start_at = time.time() + 8 + processes  # each child builds its app first, then all begin together
    children = [subprocess.Popen([sys.executable, __file__, "--child", f"{n}:{start_at}:{kind}"],
                                 env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
                for _ in range(processes)]
    time.sleep(max(0.0, start_at - 0.2 - time.time()))  # the children have warmed up by now
    others = machine.others()
    results = [json.loads(child.communicate()[0].strip().splitlines()[-1]) for child in children]
    began, ended = min(r["began"] for r in results), max(r["ended"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    cpu = machine.per_command(sum(r["cpu"] for r in results), others, len(latencies))
    return len(latencies) / (ended - began), latencies, cpu


def child(spec: str) -> None:
    """One of :func:`run_processes`'s processes: its own app on the shared database and simulator."""
    count, at, kind = spec.split(":", 2)
    n, start_at = int(count), float(at)
    settings = Settings.from_mapping(dict(os.environ))
    app = build_app(settings, storage=open_storage(settings))
    app.dispatcher.rate_limiter = RateLimiter(limit=10**9)
    key = identity.link_local(app.deps.uow_factory, "bob@acme.example", clock=app.deps.clock)
    def warm_up() -> None:  # TLS sessions, statement caches, the inventory
        for i in range(len(KINDS)):
            mixed(app, key, i)

    warm_up()
    # again just before the start, so that the run finds the inventory as a busy bot keeps it (young
    # enough to serve), not as one left idle for longer than PVEBOT_INVENTORY_MAX_AGE would
    time.sleep(max(0.0, start_at - WARM_BEFORE_START - time.time()))
    warm_up()
    time.sleep(max(0.0, start_at - time.time()))
    began, cpu = time.time(), time.process_time()
    if kind == MIXED:
        latencies = [mixed(app, key, i) for i in range(n * len(KINDS))]
    else:
        text, check = KINDS[kind]
        latencies = [timed_command(app, key, text(i), check) for i in range(n)]
    ended, cpu = time.time(), time.process_time() - cpu
    app.close()
    print(json.dumps({"began": began, "ended": ended, "cpu": cpu, "latencies": latencies}), flush=True)


KINDS: dict[str, tuple[Callable[[int], str], Callable[[Any], bool]]] = {
    "vm status": (lambda i: f"vm status acme-{i % MINE:05d}", lambda a: a.reply.title and "acme-" in a.reply.title),
    # acme's stopped guests (the odd ones): starting a running one is refused before anything is queued
    "vm start": (lambda i: f"vm start acme-{(2 * i + 1) % MINE:05d}", lambda a: bool(a.job_ids)),
    "vm list --search": (lambda i: f"vm list --search {i % MINE:05d}", lambda a: a.reply.table is not None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commands", type=int, default=300, help="commands of each kind at each size")
    parser.add_argument("--guests", default="100,20000", help="inventory sizes, comma-separated, ascending")
    parser.add_argument("--concurrency", type=int, default=8, help="threads for the concurrent run (0: skip it)")
    parser.add_argument("--workers", type=int, default=0, help="pvebot worker processes to drain the queued jobs")
    parser.add_argument("--profile", help="write a cProfile of the largest size's commands to this file")
    parser.add_argument("--inventory-max-age", type=int, help="PVEBOT_INVENTORY_MAX_AGE for the run")
    parser.add_argument("--processes", type=int, default=0, help="processes for the multi-process run (0: skip it)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: be the simulator
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one of --processes
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    if args.child is not None:
        child(args.child)
        return
    sizes = [int(s) for s in args.guests.split(",")]
    n = args.commands

    redis_url = os.environ.get("PVEBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    tmp = Path(tempfile.mkdtemp(prefix="pvebot-bench-"))
    secret = generate_key()
    env = {
        "PVEBOT_DATABASE_URL": os.environ.get("PVEBOT_BENCH_DATABASE_URL") or f"sqlite:///{tmp / 'bench.db'}",
        "PVEBOT_SECRET_KEY": generate_key(),
        "PVEBOT_REDIS_URL": redis_url,
        "PVEBOT_QUEUE": f"pvebot-bench-{uuid.uuid4().hex[:8]}",
        "PVEBOT_LOG_LEVEL": "WARNING",
        "PVE_LAB_TOKEN": secret,
    }
    if args.inventory_max_age is not None:
        env["PVEBOT_INVENTORY_MAX_AGE"] = str(args.inventory_max_age)
    settings = Settings.from_mapping(env)
    if not settings.database_url.startswith("sqlite"):
        from adapters.sql import migrate
        from adapters.sql.uow import make_engine

        migrate.upgrade(make_engine(settings.database_url))
    storage = open_storage(settings)
    # every size's cluster is up from the start, so that the run can go there and back between them
    sims = {size: Simulator(size=size, secret=secret) for size in sizes}
    provision(storage, provisioning_doc(sims[sizes[0]]), env)
    app = build_app(settings, storage=storage)
    app.dispatcher.rate_limiter = RateLimiter(limit=10**9)  # measure the path, not the limiter
    key = identity.link_local(app.deps.uow_factory, "bob@acme.example", clock=app.deps.clock)
    counter = StatementCounter(storage.uow_factory.engines)
    backend = storage.engine.dialect.name
    servers = Servers(database_url=settings.database_url, redis_url=redis_url)

    order = phases(sizes)
    print(f"database: {backend}; {n} commands of each kind per size, one after the other; acme owns {MINE} guests")
    print("sizes in turn (there and back, so that the machine's drift weighs on each alike): "
          + ", ".join(str(size) for size, _share in order))
    runs: dict[tuple[str, int], list[KindRun]] = {}
    together: dict[int, list[str]] = {size: [] for size in sizes}  # the threaded and multi-process lines
    for number, (size, share) in enumerate(order):
        provision(storage, provisioning_doc(sims[size]), env)  # the cluster's URL for this size
        machine = Machine(sims[size], servers)
        for _ in range(5):  # warm-up: TLS sessions, the new inventory, SQL statement caches
            for text, check in KINDS.values():
                run_kind(app, key, counter, machine, text=text, n=1, check=check)
        profiler = cProfile.Profile() if args.profile and size == sizes[-1] else None
        if profiler:
            profiler.enable()
        for kind, (text, check) in KINDS.items():
            runs.setdefault((kind, size), []).append(
                run_kind(app, key, counter, machine, text=text, n=max(1, n // share), check=check))
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        if any(later == size for later, _share in order[number + 1:]):
            continue  # what runs several at once runs on this size's last visit
        if args.concurrency:
            rate, latencies = run_concurrently(app, key, n=n, threads=args.concurrency)
            together[size].append(f"{size:>7}  {'all three, ' + str(args.concurrency) + ' threads':<30} {rate:>7.0f} "
                                  f"{statistics.median(latencies) * 1000:>8.1f} "
                                  f"{percentile(latencies, .99) * 1000:>8.1f}")
        for kind in (*KINDS, MIXED) if args.processes else ():
            rate, latencies, cpu = run_processes(env, machine, n=n, processes=args.processes, kind=kind)
            together[size].append(f"{size:>7}  {kind + ', ' + str(args.processes) + ' processes':<30} {rate:>7.0f} "
                                  f"{statistics.median(latencies) * 1000:>8.1f} "
                                  f"{percentile(latencies, .99) * 1000:>8.1f} {'':>8} {cpu.columns()}")

    print(f"{'guests':>7}  {'command':<30} {'cmd/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'SQL/cmd':>8} {CPU_HEADER}")
    p50s: dict[tuple[str, int], float] = {}
    for size in sizes:
        for kind in KINDS:
            run = pooled(runs[kind, size])
            p50s[kind, size] = statistics.median(run.latencies)
            print(f"{size:>7}  {kind:<30} {len(run.latencies) / run.elapsed:>7.0f} {p50s[kind, size] * 1000:>8.1f} "
                  f"{percentile(run.latencies, .99) * 1000:>8.1f} {run.statements:>8.1f} {run.cpu.columns()}")
        for line in together[size]:
            print(line)
    if len(sizes) > 1:
        ratios = ", ".join(f"{kind} {p50s[kind, sizes[-1]] / p50s[kind, sizes[0]]:.2f}x" for kind in KINDS)
        print(f"p50 at {sizes[-1]} guests / p50 at {sizes[0]}: {ratios}")
    largest = [pooled(runs[kind, sizes[-1]]) for kind in KINDS]
    print(f"all kinds at {sizes[-1]} guests: "
          f"{sum(len(r.latencies) for r in largest) / sum(r.elapsed for r in largest):.0f} commands/s")
    if not args.workers:
        app.close()  # before the simulators go: no background refresh is left to find one gone
    fetches = sum(sim.stop() for sim in sims.values())
    print(f"Proxmox inventory fetches (GET /cluster/resources), all sizes: {fetches}")

    if args.workers:
        drain(app, env, workers=args.workers)
        app.close()
    else:
        from redis import Redis
        from rq import Queue

        Queue(env["PVEBOT_QUEUE"], connection=Redis.from_url(redis_url)).empty()  # leave Redis as we found it


def drain(app: App, env: dict[str, str], *, workers: int) -> None:
    worker_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    drain_start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--burst"], env=worker_env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(workers)]
    for p in procs:
        p.wait()
    drain_s = time.perf_counter() - drain_start
    with app.deps.uow_factory(Scope.everything()) as uow:
        jobs = uow.jobs.list(limit=10**6)
    started = [j for j in jobs if j.started_at is not None]
    waits = [(j.started_at - j.created_at).total_seconds() for j in started if j.started_at]
    ok = sum(1 for j in jobs if j.state is JobState.SUCCEEDED)
    print(f"queue: {len(jobs)} jobs drained by {workers} 'pvebot worker' processes in {drain_s:.2f} s "
          f"({len(started) / drain_s:.0f} jobs started/s), {ok} succeeded")
    if waits:
        print(f"  command to job start: p50 {statistics.median(waits):.2f} s, p99 {percentile(waits, .99):.2f} s")


if __name__ == "__main__":
    main()
