"""``template list`` and ``vm create --template``: only the templates a company may clone, never another's."""

from __future__ import annotations

import pytest

from bot.bootstrap import Storage
from core.chat import Reply
from tests.fakes import FakeClock, FakeHypervisors, FakeQueue
from tests.support import STANDARD_DOC, ChatDriver, job_of, provision, test_app

BOB, CAROL, SAM, ROOT = "bob@acme.example", "carol@globex.example", "sam@host.example", "root@host.example"
# a second cluster where only acme has a pool, with a shared template of its own
EDGE = """\
  - name: edge
    api_urls: [https://127.0.0.2:8006]
    token_id: "pvebot@pve!bot"
    token_secret_env: PVE_EDGE_TOKEN
    tls: {verify: false}
    shared_templates: [9500]
companies:"""


@pytest.fixture
def world(storage: Storage, clock: FakeClock) -> tuple[ChatDriver, FakeHypervisors]:
    doc = STANDARD_DOC.replace("companies:", EDGE, 1).replace(
        "pools: [{cluster: lab, pool: acme}]", "pools: [{cluster: lab, pool: acme}, {cluster: edge, pool: acme-edge}]"
    )
    provision(storage, doc)
    hypervisors = FakeHypervisors()
    lab = hypervisors.cluster("lab")
    lab.add(101, "web-01", pool="acme")
    lab.add(9000, "tmpl-debian-12", pool="templates", template=True, cores=2, memory_gb=2, disk_gb=32)
    lab.add(9001, "tmpl-ct-debian-12", pool="templates", template=True, kind="lxc")  # bound to nobody, not shared
    lab.add(9100, "tmpl-acme-win", pool="acme", template=True, cores=4, memory_gb=8, disk_gb=64, ostype="win11")
    lab.add(9200, "tmpl-globex-rocky", pool="globex", template=True, kind="lxc", ostype="centos", disk_gb=8)
    hypervisors.cluster("edge").add(9500, "tmpl-edge-alpine", pool=None, template=True, kind="lxc", ostype="alpine",
                                    cores=1, memory_gb=1, disk_gb=4)
    return ChatDriver(test_app(storage, hypervisors=hypervisors, queue=FakeQueue())), hypervisors


def rows(reply: Reply) -> list[tuple[str, ...]]:
    assert reply.table is not None, reply.plain_text()
    return list(reply.table.rows)


def config_calls(hypervisors: FakeHypervisors) -> set[tuple[str, int]]:
    return {(name, vmid) for name, hv in hypervisors.clusters.items() for what, vmid in hv.calls if what == "config"}


def test_a_company_lists_its_own_and_the_shared_templates(world: tuple[ChatDriver, FakeHypervisors]) -> None:
    chat, hypervisors = world
    reply = chat.run("template list", as_=BOB)
    assert reply.table is not None and reply.table.columns == ("name", "cluster/vmid", "os", "cores", "memory", "disk")
    assert rows(reply) == [
        ("tmpl-acme-win", "lab/9100", "Windows 11/2022/2025", "4", "8.0 GiB", "64.0 GiB"),
        ("tmpl-debian-12 (shared)", "lab/9000", "Linux", "2", "2.0 GiB", "32.0 GiB"),
        ("tmpl-edge-alpine (shared)", "edge/9500", "alpine", "1", "1.0 GiB", "4.0 GiB"),
    ]
    assert reply.title == "Templates (3)"
    # one config call per template shown, and none for the others
    assert config_calls(hypervisors) == {("lab", 9100), ("lab", 9000), ("edge", 9500)}
    assert sum(1 for hv in hypervisors.clusters.values() for what, _ in hv.calls if what == "config") == 3


def test_another_company_never_sees_a_private_template(world: tuple[ChatDriver, FakeHypervisors]) -> None:
    chat, hypervisors = world
    listed = chat.run("template list", as_=CAROL)
    assert [r[0] for r in rows(listed)] == ["tmpl-debian-12 (shared)", "tmpl-globex-rocky"]
    assert rows(listed)[1][2] == "centos"
    text = listed.plain_text()
    assert "acme" not in text and "edge" not in text  # edge's shared template: globex has no pool there to clone into
    assert ("lab", 9100) not in config_calls(hypervisors)
    assert "acme" not in chat.run("template list", as_=BOB).plain_text().replace("tmpl-acme-win", "")
    assert "globex" not in chat.run("template list", as_=BOB).plain_text()


def test_an_unknown_template_names_the_closest_usable_ones(world: tuple[ChatDriver, FakeHypervisors]) -> None:
    chat, _ = world
    typo = chat.run("vm create app-09 --template tmpl-debain-12", as_=BOB)
    assert typo.text == "template 'tmpl-debain-12' not found; closest: tmpl-debian-12, tmpl-edge-alpine"
    # another company's private template is a template that does not exist: never suggested, however close
    assert chat.run("vm create app-09 --template tmpl-acme-wim", as_=CAROL).text == (
        "template 'tmpl-acme-wim' not found; 'template list' shows the ones you can use")
    assert chat.run("vm create app-09 --template tmpl-acme-win", as_=CAROL).text == (
        "template 'tmpl-acme-win' not found; 'template list' shows the ones you can use")
    assert chat.run("vm create app-09 --template tmpl-globex-rocki", as_=BOB).text == (
        "template 'tmpl-globex-rocki' not found; 'template list' shows the ones you can use")
    assert chat.run("vm create app-09 --template tmpl-globex-rocki", as_=CAROL).text == (
        "template 'tmpl-globex-rocki' not found; closest: tmpl-globex-rocky")
    far = chat.run("vm create app-09 --template zzz", as_=BOB)
    assert far.text == "template 'zzz' not found; 'template list' shows the ones you can use"
    assert job_of(chat.ask("vm create app-09 --template tmpl-acme-win", as_=BOB)) is not None


def test_read_only_roles_may_list_and_a_super_admin_sees_every_template(
    world: tuple[ChatDriver, FakeHypervisors],
) -> None:
    chat, _ = world
    # vm.read: a salesperson looks up what a customer could create without being able to create it
    assert [r[0] for r in rows(chat.run("template list", as_=SAM))] == [
        "tmpl-acme-win", "tmpl-debian-12 (shared)", "tmpl-edge-alpine (shared)"]
    assert [r[1] for r in rows(chat.run("template list", as_=ROOT))] == [
        "lab/9100", "lab/9001", "lab/9000", "edge/9500", "lab/9200"]
    assert [r[0] for r in rows(chat.run("template list --cluster edge", as_=BOB))] == ["tmpl-edge-alpine (shared)"]
    assert "template list [--cluster CLUSTER]" in chat.run("help", as_=BOB).plain_text()
    assert "template list" in chat.run("help template", as_=SAM).plain_text()


def test_an_unreadable_config_shows_the_kind(world: tuple[ChatDriver, FakeHypervisors]) -> None:
    chat, hypervisors = world
    del hypervisors.cluster("lab").configs[9000]
    assert rows(chat.run("template list", as_=CAROL))[0][:3] == ("tmpl-debian-12 (shared)", "lab/9000", "qemu")


def test_a_long_catalogue_describes_only_the_first_templates(world: tuple[ChatDriver, FakeHypervisors]) -> None:
    chat, hypervisors = world
    for i in range(30):
        hypervisors.cluster("lab").add(9300 + i, f"tmpl-acme-{i:02d}", pool="acme", template=True)
    reply = chat.run("template list", as_=BOB)
    assert len(rows(reply)) == 25 and reply.title == "Templates (33)"
    assert reply.footer is not None and reply.footer.startswith("25 of 33 shown; narrow with --cluster.")
    assert len(config_calls(hypervisors)) == 25
