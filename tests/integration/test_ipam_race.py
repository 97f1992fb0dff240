"""No double assignment, ever: concurrent ``ip assign`` on MariaDB hands each free address out once.

Sixteen requests race for a range with ten free addresses, each from its own thread and connection,
released together by a barrier. The unique key on (range, address) refuses every loser's insert; it
reads again and takes the next address, until the range is full and it says so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.bootstrap import Storage
from core.chat import ConversationRef
from core.errors import BotError, Conflict
from core.principal import Scope
from core.services import network
from core.services.deps import Deps
from tests.fakes import FakeClock, FakeHypervisors, FakeNotifier, FakeQueue
from tests.support import STANDARD_DOC, make_storage, mariadb_database, principal, provision

# a /28 has 14 host addresses; the gateway and three reserved leave ten
RACE_DOC = STANDARD_DOC.replace(
    "    quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}\n",
    "    quotas: {vms: 20, cores: 64, memory_gb: 256, disk_gb: 2000}\n"
    "    networks: [{name: acme-net, cluster: lab, cidr: 10.40.0.0/28, gateway: 10.40.0.1, vlan: 140,\n"
    "                bridge: vmbr0, reserved: [10.40.0.2-10.40.0.4]}]\n", 1)
RACERS = 16


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    with mariadb_database() as url:
        storage = make_storage(url)
        provision(storage, RACE_DOC)
        yield storage
        storage.uow_factory.engine.dispose()


def test_sixteen_concurrent_assigns_on_ten_free_addresses(storage: Storage) -> None:
    hypervisors = FakeHypervisors()
    for i in range(RACERS):
        hypervisors.cluster("lab").add(300 + i, f"vm-{i:02d}", pool="acme", status="stopped")
    deps = Deps(uow_factory=storage.uow_factory, hypervisors=hypervisors, queue=FakeQueue(), notifier=FakeNotifier(),
                clock=FakeClock())
    bob = principal(storage, "bob@acme.example")
    barrier = threading.Barrier(RACERS)
    answers: dict[int, str] = {}
    failures: list[BaseException] = []

    def race(i: int) -> None:
        barrier.wait()
        try:
            _, params = network.assign(deps, bob, vm=f"vm-{i:02d}", range_name=None, address=None, nic=None,
                                       conversation=ConversationRef(platform="shell", channel="race"),
                                       request_id=f"race-{i}")
            answers[i] = params["address"]
        except Conflict as e:
            answers[i] = e.user_message
        except BaseException as e:  # anything else fails the test below, with what it was
            failures.append(e)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(RACERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures, [type(e).__name__ + (f": {e.user_message}" if isinstance(e, BotError) else "")
                          for e in failures]
    given = sorted(a for a in answers.values() if a.startswith("10.40.0."))
    full = [a for a in answers.values() if not a.startswith("10.40.0.")]
    assert given == sorted(f"10.40.0.{n}" for n in range(5, 15))  # ten distinct addresses, none reserved
    assert full == ["range acme-net is full: all 10 addresses are assigned"] * 6
    with storage.uow_factory(Scope.everything()) as uow:
        held = uow.ip_assignments.for_company()
    assert sorted(a.address for a in held) == given
    assert len({a.vmid for a in held}) == 10  # and ten different VMs hold them
