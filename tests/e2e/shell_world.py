"""A complete pvebot for end-to-end tests: SQLite file, the Proxmox simulator over HTTPS, and a queue
that is either the embedded one or real Redis with a real ``pvebot worker`` subprocess."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adapters.crypto import generate_key
from adapters.shell.session import ShellSession
from bot.bootstrap import App, build_app, open_storage
from bot.config import Settings
from bot.processes import shell_session
from core.principal import Scope
from pvesim import PveSimulator, SimServer
from tests.proxmox_support import TOKEN_ID, TOKEN_SECRET, build_simulator
from tests.support import REDIS_URL, provision, service_missing

ROOT = Path(__file__).resolve().parents[2]


def world_doc(server: SimServer) -> str:
    return f"""\
clusters:
  - name: lab
    api_urls: ["{server.url}"]
    token_id: "{TOKEN_ID}"
    token_secret_env: PVE_LAB_TOKEN
    tls: {{fingerprint: "{server.fingerprint}"}}
    shared_templates: [9000]
companies:
  - {{slug: acme, name: Acme Corp, email_domains: [acme.example], pools: [{{cluster: lab, pool: acme}}],
     quotas: {{vms: 10}}}}
  - {{slug: globex, name: Globex, email_domains: [globex.example], pools: [{{cluster: lab, pool: globex}}]}}
users:
  - {{email: root@host.example, name: Root, role: super_admin}}
  - {{email: alice@acme.example, name: Alice Admin, role: company_admin, company: acme}}
  - {{email: bob@acme.example, name: Bob User, role: user, company: acme}}
  - {{email: carol@globex.example, name: Carol Admin, role: company_admin, company: globex}}
  - {{email: dave@globex.example, name: Dave User, role: user, company: globex}}
  - {{email: sam@host.example, name: Sam Sales, role: salesperson, companies: [acme, globex]}}
"""


@dataclass
class World:
    app: App
    sim: PveSimulator
    server: SimServer
    env: dict[str, str]
    log_dir: Path
    worker: subprocess.Popen[bytes] | None = None

    def shell(self, email: str, *, wait_seconds: float = 30) -> tuple[ShellSession, io.StringIO]:
        """A shell session as ``email``; at its end it waits up to ``wait_seconds`` for the jobs it started."""
        out = io.StringIO()
        return shell_session(self.app, email=email, out=out, echo=True, wait_seconds=wait_seconds), out

    def start_worker(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        with open(self.log_dir / "worker.log", "ab") as log:
            self.worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=env, cwd=ROOT,
                                           stdout=log, stderr=subprocess.STDOUT)
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            try:
                self.worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()
        self.worker = None

    def job_state(self, job_id: str) -> str:
        with self.app.deps.uow_factory(Scope.everything()) as uow:
            job = uow.jobs.get(job_id)
            assert job is not None
            return job.state.value

    def wait_state(self, job_id: str, states: set[str], *, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state in states:
                return state
            time.sleep(0.05)
        raise AssertionError(f"job-{job_id} still {self.job_state(job_id)} after {timeout}s")


@contextmanager
def world(
    tmp_path: Path, *, queue: str, task_seconds: float = 0.3, stale_seconds: int = 60, start_worker: bool = True,
    database_url: str | None = None, follow_grace: float = 60.0,
    doc: Callable[[SimServer], str] = world_doc, extra_env: dict[str, str] | None = None,
) -> Iterator[World]:
    """A running pvebot; ``database_url`` (an empty, migrated database) replaces the SQLite file."""
    sim = build_simulator(task_seconds=task_seconds)
    server = sim.start()
    env = {
        "PVEBOT_DATABASE_URL": database_url or f"sqlite:///{tmp_path / 'pvebot.db'}",
        "PVEBOT_SECRET_KEY": generate_key(),
        "PVE_LAB_TOKEN": TOKEN_SECRET,
        "PVEBOT_JOB_TIMEOUT": "60",
        "PVEBOT_JOB_STALE_SECONDS": str(stale_seconds),
        "PVEBOT_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    if queue == "redis":
        import redis

        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.RedisError as e:
            sim.stop()
            service_missing("Redis", e)
        env["PVEBOT_REDIS_URL"] = REDIS_URL
        env["PVEBOT_QUEUE"] = f"pvebot-test-{uuid.uuid4().hex[:8]}"
    settings = Settings.from_mapping(env)
    storage = open_storage(settings)
    provision(storage, doc(server), env)
    app = build_app(settings, storage=storage, progress_interval=0.2, poll_interval=0.05, follow_grace=follow_grace)
    w = World(app=app, sim=sim, server=server, env=env, log_dir=tmp_path)
    if queue == "redis" and start_worker:
        w.start_worker()
    try:
        yield w
    finally:
        w.stop_worker()
        app.close()
        sim.stop()
        storage.engine.dispose()


JOB_ID = re.compile(r"job-([a-z0-9]+)")


def job_ids(text: str) -> list[str]:
    seen: list[str] = []
    for j in JOB_ID.findall(text):
        if j not in seen:
            seen.append(j)
    return seen
