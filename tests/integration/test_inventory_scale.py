"""A company's commands look at its own guests only, however many the other companies have.

The cluster holds 20,000 guests of globex and a handful of acme's. Counting the OwnedGuest
wrappers that find and view build shows whose guests were looked at: for acme's people, never
globex's. The guests come from FakeHypervisors; the ownership from SQL, as in production.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.bootstrap import Storage
from core.errors import InvalidArguments, NotFound
from core.services import inventory
from core.services.deps import Deps
from tests.fakes import FakeClock, FakeHypervisors, FakeNotifier, FakeQueue
from tests.support import principal, provision

OTHERS = 20_000


class Counting(inventory.OwnedGuest):
    made: list[str] = []

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        Counting.made.append(self.guest.pool or "")


@pytest.fixture
def world(storage: Storage, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> tuple[Deps, FakeHypervisors]:
    provision(storage)
    hypervisors = FakeHypervisors()
    lab = hypervisors.cluster("lab")
    for i in range(OTHERS):
        lab.add(10_000 + i, f"gx-{i:05d}", pool="globex")
    lab.add(101, "web-01", pool="acme")
    lab.add(102, "db-01", pool="acme", status="stopped")
    lab.add(103, "shared-name", pool="acme")
    lab.add(104, "shared-name", pool="acme")
    lab.add(200, "gx-web", pool="globex")
    lab.add(9000, "tmpl-debian-12", pool=None, template=True)
    Counting.made = []
    monkeypatch.setattr(inventory, "OwnedGuest", Counting)
    deps = Deps(uow_factory=storage.uow_factory, hypervisors=hypervisors, queue=FakeQueue(), notifier=FakeNotifier(),
                clock=clock)
    return deps, hypervisors


def test_find_wraps_only_the_guests_the_reference_names(storage: Storage, world: tuple[Deps, Any]) -> None:
    deps, _ = world
    bob = principal(storage, "bob@acme.example")
    assert inventory.find(deps, bob, "web-01").guest.vmid == 101
    assert inventory.find(deps, bob, "102").guest.name == "db-01"
    assert inventory.find(deps, bob, "lab/101").guest.name == "web-01"
    assert Counting.made == ["acme", "acme", "acme"]


def test_out_of_scope_answers_like_not_found_without_looking_further(
    storage: Storage, world: tuple[Deps, Any]
) -> None:
    deps, _ = world
    bob = principal(storage, "bob@acme.example")
    for ref in ("gx-web", "200", "lab/200", "gx-00042", "nope", "tmpl-debian-12", "9000"):
        with pytest.raises(NotFound, match=f"VM '{ref}' not found"):
            inventory.find(deps, bob, ref)
    assert Counting.made == []
    with pytest.raises(InvalidArguments, match="matches several: lab/103 \\(shared-name\\), lab/104"):
        inventory.find(deps, bob, "SHARED-NAME")


def test_a_companys_view_is_its_own_guests_sorted(storage: Storage, world: tuple[Deps, Any]) -> None:
    deps, _ = world
    bob = principal(storage, "bob@acme.example")
    seen = inventory.view(deps, bob)
    assert [o.guest.vmid for o in seen.guests] == [102, 103, 104, 101]
    assert [o.guest.vmid for o in seen.templates] == [9000]  # shared with every company of the cluster
    assert {o.company.slug for o in seen.guests if o.company} == {"acme"}
    assert set(Counting.made) == {"acme", ""} and len(Counting.made) == 5


def test_the_other_company_and_a_super_admin_still_see_theirs(storage: Storage, world: tuple[Deps, Any]) -> None:
    deps, _ = world
    carol = principal(storage, "carol@globex.example")
    assert inventory.find(deps, carol, "gx-web").company.slug == "globex"  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        inventory.find(deps, carol, "web-01")
    assert len(inventory.view(deps, carol).guests) == OTHERS + 1
    root = principal(storage, "root@host.example")
    everything = inventory.view(deps, root)
    assert len(everything.guests) == OTHERS + 5
    assert [o.guest.name for o in everything.guests[:2]] == ["db-01", "gx-00000"]
    assert inventory.find(deps, root, "lab/103").company.slug == "acme"  # type: ignore[union-attr]
