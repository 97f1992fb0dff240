"""GuestIndex: lookups by VMID, by name (any case) and by pool, with templates kept apart."""

from __future__ import annotations

from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.proxmox import mapping
from core.guest_index import GuestIndex, name_key
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

    index = GuestIndex.of_rows("lab", rows, place=mapping.resource_place, name=mapping.resource_name, make=make)  # type: ignore[arg-type]
    assert made == [] and len(index) == 1000
    assert [g.name for g in index.in_pool("acme")] == ["vm-0", "vm-1", "vm-2"]
    assert index.by_vmid(101) == mapping.guest_from_resource("lab", rows[1])  # type: ignore[arg-type]
    assert sorted(made) == [100, 101, 102]  # the company's own three, each made once


def test_a_resource_row_keys_as_its_guest_does_whatever_json_types_proxmox_used() -> None:
    rows = [{"vmid": 100, "name": "web", "type": "qemu", "node": "pve1", "template": 0, "pool": "acme"},
            {"vmid": "101", "type": "lxc", "node": "pve1", "template": "1"},
            {"vmid": 102, "name": "", "type": "qemu", "node": "pve1", "pool": ""},
            {"vmid": 103, "name": "t", "type": "qemu", "node": "pve1", "template": 1}]
    keys = [(*mapping.resource_place(r), mapping.resource_name(r)) for r in rows]
    made = [mapping.guest_from_resource("lab", r) for r in rows]
    assert keys == [(100, "acme", False, "web"), (101, None, True, "lxc-101"), (102, None, False, "qemu-102"),
                    (103, None, True, "t")]
    assert [(g.vmid, g.pool, g.template, g.name) for g in made] == keys
    index = GuestIndex.of_rows("lab", rows, place=mapping.resource_place, name=mapping.resource_name,
                               make=partial(mapping.guest_from_resource, "lab"))
    assert index.by_vmid(101) is not None and index.by_vmid(101).template  # type: ignore[union-attr]


def test_a_company_lookup_names_only_its_own_pools_rows() -> None:
    rows = [{"vmid": 100 + i, "name": f"vm-{i % 7}", "type": "qemu", "node": "pve1",
             "pool": "acme" if i < 5 else f"other{i % 9}"} for i in range(2000)]
    named: list[int] = []

    def name(row: dict[str, object]) -> str:
        named.append(int(str(row["vmid"])))
        return mapping.resource_name(row)  # type: ignore[arg-type]

    index = GuestIndex.of_rows("lab", rows, place=mapping.resource_place, name=name,  # type: ignore[arg-type]
                               make=partial(mapping.guest_from_resource, "lab"))
    assert named == []  # a refresh files rows by VMID and pool only
    assert [g.vmid for g in index.named("VM-1", pools=["acme"])] == [101]
    assert [g.vmid for g in index.named("vm-1", pools=["acme", "nobody"])] == [101]
    assert sorted(named) == [100, 101, 102, 103, 104]  # acme's five, nobody else's
    assert [g.vmid for g in index.named("vm-1")][:3] == [101, 108, 115]  # every pool: all namesakes, by VMID


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(100, 400), st.sampled_from(["Web", "web", "db", "DB-1", "x"]),
                          st.sampled_from([None, "acme", "globex"]), st.booleans()), max_size=40))
def test_lookups_answer_as_a_scan_of_the_whole_answer_would(spec: list[tuple[int, str, str | None, bool]]) -> None:
    unique = {vmid: (vmid, name, pool, template) for vmid, name, pool, template in spec}  # VMIDs are unique
    guests = [guest(vmid, name, pool=pool, template=template) for vmid, name, pool, template in unique.values()]
    index = GuestIndex.build("lab", guests)
    ordered = sorted(guests, key=name_key)
    for pool in (None, "acme", "globex"):
        assert index.in_pool(pool) == tuple(g for g in ordered if g.pool == pool and not g.template)
    assert index.templates == tuple(g for g in ordered if g.template)
    for name in ("WEB", "db", "db-1", "x", "none"):
        everywhere = tuple(g for g in ordered if g.name.lower() == name.lower() and not g.template)
        assert index.named(name) == everywhere
        assert index.named(name, pools=["acme"]) == tuple(g for g in everywhere if g.pool == "acme")
    assert set(index.pools()) == {g.pool for g in guests if not g.template}
