"""GuestIndex: lookups by VMID, by name (any case) and by pool, with templates kept apart."""

from __future__ import annotations

from functools import partial

from adapters.proxmox import mapping
from core.guest_index import GuestIndex
from core.model import Guest


def guest(vmid: int, name: str, *, pool: str | None = "acme", template: bool = False) -> Guest:
    return Guest(cluster="lab", vmid=vmid, name=name, kind="qemu", node="pve1", status="running", pool=pool,
                 template=template)


INDEX = GuestIndex.build("lab", [
    guest(102, "web-02"), guest(101, "Web-01"), guest(201, "web-01", pool="globex"), guest(300, "loose", pool=None),
    guest(9000, "tmpl-debian", pool=None, template=True), guest(9001, "web-01", template=True),
])


def test_by_vmid_finds_guests_and_templates_and_nothing_else() -> None:
    assert INDEX.by_vmid(101).name == "Web-01"  # type: ignore[union-attr]
    assert INDEX.by_vmid(9000).template  # type: ignore[union-attr]
    assert INDEX.by_vmid(999) is None


def test_names_compare_without_case_and_never_answer_with_a_template() -> None:
    assert [g.vmid for g in INDEX.named("WEB-01")] == [101, 201]  # both companies' namesakes: the caller filters
    assert [g.vmid for g in INDEX.named("web-02")] == [102]
    assert INDEX.named("tmpl-debian") == ()
    assert INDEX.named("nope") == ()


def test_a_pool_lists_its_own_guests_sorted_by_name() -> None:
    assert [g.vmid for g in INDEX.in_pool("acme")] == [101, 102]
    assert [g.vmid for g in INDEX.in_pool("globex")] == [201]
    assert [g.vmid for g in INDEX.in_pool(None)] == [300]
    assert INDEX.in_pool("initech") == ()
    assert set(INDEX.pools()) == {"acme", "globex", None}


def test_templates_and_the_whole_answer_are_kept() -> None:
    assert [g.vmid for g in INDEX.templates] == [9000, 9001]
    assert len(INDEX) == 6 and {g.vmid for g in INDEX.guests} == {101, 102, 201, 300, 9000, 9001}
    assert GuestIndex.build("empty", []).named("x") == () and len(GuestIndex.build("empty", [])) == 0


def test_rows_become_guests_only_when_a_lookup_reaches_them() -> None:
    from adapters.proxmox import mapping

    rows = [{"vmid": 100 + i, "name": f"vm-{i}", "type": "qemu", "node": "pve1", "status": "running",
             "pool": "acme" if i < 3 else "globex"} for i in range(1000)]
    made: list[int] = []

    def make(row: dict[str, object]) -> Guest:
        made.append(int(str(row["vmid"])))
        return mapping.guest_from_resource("lab", row)  # type: ignore[arg-type]

    index = GuestIndex.of_rows("lab", rows, key=mapping.resource_key, make=make)  # type: ignore[arg-type]
    assert made == [] and len(index) == 1000
    assert [g.name for g in index.in_pool("acme")] == ["vm-0", "vm-1", "vm-2"]
    assert index.by_vmid(101) == mapping.guest_from_resource("lab", rows[1])  # type: ignore[arg-type]
    assert sorted(made) == [100, 101, 102]  # the company's own three, each made once


def test_a_resource_row_keys_as_its_guest_does_whatever_json_types_proxmox_used() -> None:
    rows = [{"vmid": 100, "name": "web", "type": "qemu", "node": "pve1", "template": 0, "pool": "acme"},
            {"vmid": "101", "type": "lxc", "node": "pve1", "template": "1"},
            {"vmid": 102, "name": "", "type": "qemu", "node": "pve1", "pool": ""},
            {"vmid": 103, "name": "t", "type": "qemu", "node": "pve1", "template": 1}]
    keys = [mapping.resource_key(r) for r in rows]
    made = [mapping.guest_from_resource("lab", r) for r in rows]
    assert [(k.vmid, k.name, k.pool, k.template) for k in keys] == [
        (100, "web", "acme", False), (101, "lxc-101", None, True), (102, "qemu-102", None, False),
        (103, "t", None, True)]
    assert [(g.vmid, g.name, g.pool, g.template) for g in made] == [tuple(k) for k in keys]
    index = GuestIndex.of_rows("lab", rows, key=mapping.resource_key, make=partial(mapping.guest_from_resource, "lab"))
    assert index.by_vmid(101) is not None and index.by_vmid(101).template  # type: ignore[union-attr]
