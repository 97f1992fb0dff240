"""``pvebot demo``: everything embedded — SQLite, the in-process queue, a simulated Proxmox cluster,
two companies and users of every role — behind a terminal chat."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from adapters.crypto import generate_key
from bot.bootstrap import App, build_app, open_storage
from bot.config import Settings
from bot.yamlfile import LocatedDocument
from core.principal import Scope
from core.services import provisioning
from pvesim import PveSimulator, SimServer

TOKEN_ID = "pvebot@pve!demo"
TOKEN_ENV = "PVEBOT_DEMO_PVE_TOKEN"

DEMO_USERS = (
    ("root@host.example", "super_admin", "every company"),
    ("alice@acme.example", "company_admin", "acme"),
    ("erin@acme.example", "company_admin", "acme"),
    ("bob@acme.example", "user", "acme"),
    ("carol@globex.example", "company_admin", "globex"),
    ("dave@globex.example", "user", "globex"),
    ("sam@host.example", "salesperson", "acme, globex (read-only)"),
)

# (vmid, name, kind, node, pool, status, cores, memory MB, disk GB)
_GUESTS = [
    (101, "web-01", "qemu", "pve1", "acme", "running", 2, 2048, 32),
    (102, "web-02", "qemu", "pve2", "acme", "running", 2, 2048, 32),
    (103, "web-03", "qemu", "pve1", "acme", "stopped", 2, 2048, 32),
    (104, "db-01", "qemu", "pve2", "acme", "running", 4, 8192, 128),
    (105, "db-02", "qemu", "pve1", "acme", "stopped", 4, 8192, 128),
    (106, "cache-01", "lxc", "pve2", "acme", "running", 1, 1024, 8),
    (107, "mail-01", "qemu", "pve1", "acme", "running", 2, 4096, 64),
    (108, "ci-runner", "lxc", "pve2", "acme", "stopped", 2, 2048, 16),
    (201, "shop-01", "qemu", "pve1", "globex", "running", 2, 4096, 40),
    (202, "shop-02", "qemu", "pve2", "globex", "running", 2, 4096, 40),
    (203, "erp", "qemu", "pve1", "globex", "running", 8, 16384, 256),
    (204, "backup-gw", "lxc", "pve2", "globex", "stopped", 1, 512, 8),
    (205, "vpn", "lxc", "pve1", "globex", "running", 1, 512, 4),
    (206, "monitor", "qemu", "pve2", "globex", "stopped", 2, 2048, 32),
]


def build_simulator(*, task_seconds: float = 1.5) -> PveSimulator:
    sim = PveSimulator(task_seconds=task_seconds)
    for node in ("pve1", "pve2"):
        sim.add_node(node)
    sim.add_storage("local", content="iso,vztmpl,backup")
    sim.add_storage("local-lvm", content="images,rootdir")
    for vmid, name, kind, node, pool, status, cores, memory, disk in _GUESTS:
        sim.add_guest(vmid=vmid, name=name, kind=kind, node=node, pool=pool, status=status, cores=cores,
                      memory_mb=memory, disk_gb=disk, tags=("demo",), ip=f"10.{vmid // 100}.0.{vmid % 100}",
                      uptime=(vmid % 37) * 86400 + vmid * 97)
    # a dozen more per company so that lists paginate
    for i in range(12):
        sim.add_guest(vmid=110 + i, name=f"acme-dev-{i:02d}", node=("pve1", "pve2")[i % 2], pool="acme",
                      status=("running", "stopped")[i % 2], cores=1, memory_mb=1024, disk_gb=16, tags=("dev",))
        sim.add_guest(vmid=210 + i, name=f"globex-test-{i:02d}", kind="lxc", node=("pve1", "pve2")[i % 2],
                      pool="globex", status="running", cores=1, memory_mb=512, disk_gb=8, tags=("test",))
    sim.add_guest(vmid=9000, name="debian-12", node="pve1", template=True, pool="templates", disk_gb=16)
    sim.add_guest(vmid=9001, name="acme-golden", node="pve1", template=True, pool="acme", disk_gb=32)
    return sim


def provisioning_doc(server: SimServer) -> str:
    return f"""\
clusters:
  - name: demo
    api_urls: ["{server.url}"]
    token_id: "{TOKEN_ID}"
    token_secret_env: {TOKEN_ENV}
    tls: {{fingerprint: "{server.fingerprint}"}}
    shared_templates: [9000]
companies:
  - slug: acme
    name: Acme Corp
    email_domains: [acme.example]
    pools: [{{cluster: demo, pool: acme}}]
    quotas: {{vms: 30, cores: 64, memory_gb: 128, disk_gb: 2000}}
  - slug: globex
    name: Globex
    email_domains: [globex.example]
    pools: [{{cluster: demo, pool: globex}}]
    quotas: {{vms: 30, cores: 48, memory_gb: 96, disk_gb: 1000}}
users:
  - {{email: root@host.example, name: Root Admin, role: super_admin}}
  - {{email: alice@acme.example, name: Alice Admin, role: company_admin, company: acme}}
  - {{email: erin@acme.example, name: Erin Admin, role: company_admin, company: acme}}
  - {{email: bob@acme.example, name: Bob User, role: user, company: acme}}
  - {{email: carol@globex.example, name: Carol Admin, role: company_admin, company: globex}}
  - {{email: dave@globex.example, name: Dave User, role: user, company: globex}}
  - {{email: sam@host.example, name: Sam Sales, role: salesperson, companies: [acme, globex]}}
"""


@dataclass
class Demo:
    app: App
    sim: PveSimulator
    data_dir: Path

    def close(self) -> None:
        self.app.close()
        self.sim.stop()


def start(*, data_dir: Path | None = None, task_seconds: float = 1.5) -> Demo:
    """A fresh demo world: its own database, key and simulated cluster."""
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="pvebot-demo-"))
    token_secret = generate_key()  # any unguessable string will do for the simulator
    sim = build_simulator(task_seconds=task_seconds)
    sim.add_token(TOKEN_ID, token_secret)
    server = sim.start()
    env = {
        "PVEBOT_DATABASE_URL": f"sqlite:///{data_dir / 'demo.db'}",
        "PVEBOT_SECRET_KEY": generate_key(),
        TOKEN_ENV: token_secret,
    }
    settings = Settings.from_mapping(env)
    storage = open_storage(settings)
    doc = LocatedDocument(provisioning_doc(server), source="demo.yaml")
    spec = provisioning.validate(doc.data, locate=doc.locate, env=env)
    with storage.uow_factory(Scope.everything()) as uow:
        provisioning.apply(uow, spec, cipher=storage.cipher, env=env, clock=storage.clock, actor="demo",
                           locate=doc.locate)
        uow.commit()
    return Demo(app=build_app(settings, storage=storage), sim=sim, data_dir=data_dir)
