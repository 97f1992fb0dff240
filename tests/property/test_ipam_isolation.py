"""IPAM as properties: no two VMs ever hold one address, and no company sees or uses another's ranges.

Hypothesis builds companies with VMs and small ranges on one cluster (so ranges fill up), principals
of every role, and a sequence of ``ip assign`` requests by random principals on random VMs, naming
their own range, another company's, one that does not exist, or none, with or without an address.
After every request and at the end:

* every answer about another company's VM or range is word for word the answer about one that does
  not exist (names aside), so nobody learns what other companies have;
* ``net list`` / ``net show`` show exactly the ranges in the principal's scope, ``vlan list`` exactly the
  VLANs, ranges and VMs of its companies, and ``net audit`` names none of another company's VMs;
* no address is held twice on one segment, no NIC holds two, and every address sits on a VM of the
  range's own company.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import StaticPool

from adapters.sql.tables import metadata
from adapters.sql.uow import SqlUnitOfWorkFactory, make_engine
from core.chat import ConversationRef
from core.errors import BotError, InvalidArguments, NotFound
from core.model import Cluster, Company, IpRange, Nic, PoolBinding, Role, User
from core.principal import Principal, Scope
from core.services import ipam, network
from core.services.deps import Deps
from tests.fakes import FakeClock, FakeHypervisors, FakeNotifier, FakeQueue

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
CONVERSATION = ConversationRef(platform="shell", channel="prop")


@dataclass(frozen=True)
class Plan:
    companies: int
    vms: tuple[int, ...]  # per company
    ranges: tuple[int, ...]  # per company, 1 or 2
    # (role, home company, salesperson's companies)
    users: tuple[tuple[Role, int, frozenset[int]], ...]
    # (user, company whose VM, vm index, range choice, address offset or None)
    requests: tuple[tuple[int, int, int, str, int | None], ...]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(2, 3))
    company = st.integers(0, n - 1)
    users = [(Role.SUPER_ADMIN, 0, frozenset())] + [(Role.COMPANY_ADMIN, c, frozenset()) for c in range(n)]
    users += [(Role.USER, c, frozenset()) for c in range(n)]
    users.append((Role.SALESPERSON, draw(company), draw(st.frozensets(company))))
    request = st.tuples(st.integers(0, len(users) - 1), company, st.integers(0, 2),
                        st.sampled_from(["own", "other", "missing", "none"]), st.none() | st.integers(0, 8))
    return Plan(n, tuple(draw(st.integers(1, 3)) for _ in range(n)), tuple(draw(st.integers(1, 2)) for _ in range(n)),
                tuple(users), tuple(draw(st.lists(request, min_size=1, max_size=14))))


@dataclass
class World:
    deps: Deps
    companies: list[int]
    principals: list[Principal]
    vm_names: dict[int, list[str]]  # company index -> its VM names
    range_names: dict[int, list[str]]
    owner_of_vm: dict[int, int]  # vmid -> company id
    range_company: dict[int, int]  # range id -> company id
    range_vlan: dict[int, int]


@contextmanager
def built(plan: Plan) -> Iterator[World]:
    engine = make_engine("sqlite://", poolclass=StaticPool)
    metadata.create_all(engine)
    factory = SqlUnitOfWorkFactory(engine)
    hypervisors = FakeHypervisors()
    deps = Deps(uow_factory=factory, hypervisors=hypervisors, queue=FakeQueue(), notifier=FakeNotifier(),
                clock=FakeClock(NOW))
    try:
        with factory(Scope.everything()) as uow:
            cluster = Cluster(name="cl0", api_urls=["https://10.0.0.1:8006"], token_id="pvebot@pve!bot",
                              token_secret_encrypted="not-a-secret")
            uow.clusters.add(cluster)
            companies = [Company(slug=f"co{i}", name=f"Company {i}") for i in range(plan.companies)]
            for c in companies:
                uow.companies.add(c)
            ids = [c.id or 0 for c in companies]
            world = World(deps, ids, [], {}, {}, {}, {}, {})
            vmid = 100
            for i, company_id in enumerate(ids):
                uow.pool_bindings.add(PoolBinding(company_id=company_id, cluster_id=cluster.id or 0, pool=f"p{i}"))
                world.vm_names[i] = []
                for _ in range(plan.vms[i]):
                    hypervisors.cluster("cl0").add(vmid, f"vm{vmid}", pool=f"p{i}")
                    # on its company's first VLAN: `vlan list` names it to that company alone
                    hypervisors.cluster("cl0").nic_table[vmid] = [Nic(index=0, bridge="vmbr0", vlan=100 + 10 * i)]
                    world.vm_names[i].append(f"vm{vmid}")
                    world.owner_of_vm[vmid] = company_id
                    vmid += 1
                world.range_names[i] = []
                for j in range(plan.ranges[i]):
                    # the same addresses for every company, each on its own VLAN: only the segment tells them apart
                    rng = IpRange(company_id=company_id, cluster_id=cluster.id or 0, name=f"co{i}-r{j}",
                                  cidr=f"10.0.{j}.0/29", gateway=f"10.0.{j}.1", vlan=100 + 10 * i + j,
                                  bridge="vmbr0")
                    uow.ip_ranges.add(rng)
                    world.range_names[i].append(rng.name)
                    world.range_company[rng.id or 0] = company_id
                    world.range_vlan[rng.id or 0] = rng.vlan or 0
            for k, (role, home, assigned) in enumerate(plan.users):
                user = User(email=f"u{k}@example.com", name=f"U{k}", role=role,
                            company_id=None if role is Role.SUPER_ADMIN else ids[home],
                            assigned_companies=[companies[a] for a in sorted(assigned)])
                uow.users.add(user)
                world.principals.append(Principal.of(user))
            uow.commit()
        yield world
    finally:
        engine.dispose()


def _answer(world: World, who: Principal, *, vm: str, range_name: str | None, address: str | None) -> str:
    try:
        _, params = network.assign(world.deps, who, vm=vm, range_name=range_name, address=address, nic=None,
                                   conversation=CONVERSATION, request_id=f"r-{vm}-{range_name}-{address}-{who.user_id}"
                                   f"-{world.deps.clock.now().timestamp()}")
        return f"assigned {params['address']}"
    except BotError as e:
        return f"{type(e).__name__}: {e.user_message}"


def _held(world: World) -> list[tuple[int, str, int | None, int, int]]:
    with world.deps.uow_factory(Scope.everything()) as uow:
        return [(a.range_id, a.address, a.vmid, a.nic, a.company_id) for a in uow.ip_assignments.for_company()]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans())
def test_no_address_twice_and_no_company_sees_another_s_ranges(plan: Plan) -> None:
    with built(plan) as world:
        for user, co, vm_index, choice, offset in plan.requests:
            who = world.principals[user]
            names = world.vm_names[co]
            vm = names[vm_index % len(names)]
            own = [i for i, cid in enumerate(world.companies) if who.scope.contains(cid)]
            theirs = [i for i in range(plan.companies) if i not in own]
            range_name = {"own": world.range_names[co][0], "other": None, "missing": "nosuch-range",
                          "none": None}[choice]
            if choice == "other" and theirs:
                range_name = world.range_names[theirs[0]][0]
            address = None if offset is None else f"10.0.0.{offset}"
            answer = _answer(world, who, vm=vm, range_name=range_name, address=address)
            if not who.scope.contains(world.companies[co]):
                # another company's VM: word for word a VM that does not exist
                ghost = _answer(world, who, vm="vm999", range_name=range_name, address=address)
                assert answer.replace(vm, "?") == ghost.replace("vm999", "?"), (answer, ghost)
            elif range_name is not None and choice == "other" and theirs and not answer.startswith("Permission"):
                ghost = _answer(world, who, vm=vm, range_name="nosuch-range", address=address)
                assert answer.replace(range_name, "?") == ghost.replace("nosuch-range", "?"), (answer, ghost)
                assert isinstance(answer, str) and answer.startswith(("NotFound", "InvalidArguments"))
            world.deps.clock.advance(seconds=1)  # type: ignore[attr-defined]

        held = _held(world)
        segments = Counter((world.range_vlan[r], address) for r, address, *_ in held)
        assert all(n == 1 for n in segments.values()), segments
        nics = Counter((vmid, nic) for _, _, vmid, nic, _ in held)
        assert all(n == 1 for n in nics.values()), nics
        for range_id, _, vmid, _, company_id in held:
            assert world.range_company[range_id] == company_id == world.owner_of_vm[vmid or 0]

        for who in world.principals:
            if who.role is Role.SUPER_ADMIN:
                continue
            shown = ipam.ranges(world.deps, who)
            assert {u.range.company_id for u in shown} <= set(who.scope.company_ids or ())
            assert {u.range.name for u in shown} == {n for i, cid in enumerate(world.companies)
                                                     if who.scope.contains(cid) for n in world.range_names[i]}
            mine = [i for i, cid in enumerate(world.companies) if who.scope.contains(cid)]
            used = network.vlans(world.deps, who)
            assert {t.vlan for t in used} == {100 + 10 * i + j for i in mine for j in range(plan.ranges[i])}
            assert {r for t in used for r in t.ranges} == {n for i in mine for n in world.range_names[i]}
            assert {v.split()[0] for t in used for v in t.vms} == {n for i in mine for n in world.vm_names[i]}
            if who.role is Role.COMPANY_ADMIN:
                drift, _ = network.audit(world.deps, who)
                assert {d.vm.split()[0] for d in drift} <= {n for i in mine for n in world.vm_names[i]}, drift
            for i, cid in enumerate(world.companies):
                if who.scope.contains(cid):
                    continue
                for name in world.range_names[i]:
                    try:
                        ipam.show(world.deps, who, name)
                        raise AssertionError(f"{who.email} saw {name}")
                    except NotFound as e:
                        assert e.user_message == f"range '{name}' not found"

        # every company's ranges sit on the same networks: naming one by its network finds the caller's
        # own range, asks which one when the caller sees several, and never shows another company's
        for who in world.principals:
            mine = [i for i, cid in enumerate(world.companies) if who.scope.contains(cid)]
            for j in range(max(plan.ranges)):
                network_text = f"10.0.{j}.0/29"
                holders = [world.range_names[i][j] for i in mine if j < plan.ranges[i]]
                try:
                    usage, _ = ipam.show(world.deps, who, network_text)
                    assert holders == [usage.range.name], (who.email, network_text, holders)
                except NotFound as e:
                    assert not holders and e.user_message == f"range '{network_text}' not found"
                except InvalidArguments as e:
                    assert len(holders) > 1 and e.user_message.startswith(f"{network_text} is the network of several")
                    listed = e.user_message.split(": ", 1)[1].split("; ")[0].split(", ")
                    assert sorted(name.split("/", 1)[1] for name in listed) == sorted(holders), e.user_message
