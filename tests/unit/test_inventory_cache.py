"""The gateway's inventory cache: never older than its bound, at most one fetch at a time.

The clock is a fake and background refreshes are mostly handed to a list the test runs when
it chooses, so the interleaving is decided by the test; where real threads run, the assertions
hold whatever the scheduler does.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable

import pytest

from adapters.proxmox.inventory_cache import InventoryCache
from core.errors import ExternalSystemError
from core.guest_index import GuestIndex


class World:
    """A cluster whose every answer remembers when it was fetched."""

    def __init__(self) -> None:
        self.now = 100.0
        self.fetched_at: dict[int, float] = {}
        self.fetches = 0
        self.down: str | None = None
        self.pending: list[Callable[[], None]] = []

    def clock(self) -> float:
        return self.now

    def fetch(self) -> GuestIndex:
        self.fetches += 1
        if self.down:
            raise ExternalSystemError(self.down)
        index = GuestIndex.build("lab", [])
        self.fetched_at[id(index)] = self.now
        return index

    def cache(self, max_age: float = 10.0) -> InventoryCache:
        return InventoryCache(self.fetch, max_age=max_age, clock=self.clock, spawn=self.pending.append)

    def run_pending(self) -> None:
        while self.pending:
            self.pending.pop(0)()


def test_fresh_answers_are_shared_and_refresh_true_always_fetches() -> None:
    world = World()
    cache = world.cache()
    first = cache.get()
    world.now += 4.9
    assert cache.get() is first and world.fetches == 1 and world.pending == []
    assert cache.get(refresh=True) is not first and world.fetches == 2


def test_a_stale_answer_is_served_while_one_background_fetch_runs() -> None:
    world = World()
    cache = world.cache()
    first = cache.get()
    world.now += 6  # past refresh_after (5), within max_age (10)
    assert cache.get() is first and cache.get() is first
    assert len(world.pending) == 1 and world.fetches == 1  # one refresh for everybody
    world.run_pending()
    second = cache.get()
    assert second is not first and world.fetched_at[id(second)] == world.now


def test_an_answer_older_than_the_bound_is_never_served() -> None:
    world = World()
    cache = world.cache()
    first = cache.get()
    world.now += 10
    assert cache.get() is not first and world.fetches == 2


def test_a_silent_cluster_keeps_its_last_answer_until_the_bound_then_says_so() -> None:
    world = World()
    cache = world.cache()
    first = cache.get()
    world.down = "cluster lab: no API URL of the cluster accepted a connection"
    world.now += 6
    assert cache.get() is first
    world.run_pending()  # the background refresh fails, quietly
    assert cache.get() is first
    world.run_pending()  # and so does the next one
    world.now += 4
    with pytest.raises(ExternalSystemError, match="no API URL"):
        cache.get()
    world.down = None
    assert cache.get() is not first


def test_invalidate_makes_the_next_caller_fetch() -> None:
    world = World()
    cache = world.cache()
    first = cache.get()
    cache.invalidate()
    assert cache.get() is not first and world.fetches == 2


def test_random_schedules_never_serve_an_answer_older_than_the_bound() -> None:
    # real background threads here: a caller that finds the answer too old waits for the one under way
    rng = random.Random(8)
    for _ in range(30):
        world = World()
        numbers: dict[int, int] = {}

        def fetch(world: World = world, numbers: dict[int, int] = numbers) -> GuestIndex:
            index = world.fetch()
            numbers[id(index)] = world.fetches
            return index

        cache = InventoryCache(fetch, max_age=rng.choice([1.0, 5.0, 30.0]), clock=world.clock)
        for _ in range(200):
            if rng.random() < 0.4:
                world.now += rng.random() * cache.max_age
                continue
            refresh = rng.random() < 0.1
            before = world.fetches
            index = cache.get(refresh=refresh)
            assert world.now - world.fetched_at[id(index)] < cache.max_age
            if refresh:
                assert numbers[id(index)] > before  # fetched after the call began


def test_concurrent_callers_wait_for_one_fetch_and_share_it() -> None:
    entered, release = threading.Event(), threading.Event()
    fetches: list[int] = []

    def slow_fetch() -> GuestIndex:
        fetches.append(1)
        entered.set()
        release.wait()
        return GuestIndex.build("lab", [])

    cache = InventoryCache(slow_fetch, max_age=60)
    answers: list[GuestIndex] = []
    first = threading.Thread(target=lambda: answers.append(cache.get()))
    first.start()
    entered.wait()
    others = [threading.Thread(target=lambda: answers.append(cache.get())) for _ in range(5)]
    for t in others:
        t.start()
    release.set()
    for t in [first, *others]:
        t.join()
    # whether a caller came before or after the fetch ended, nobody started a second one
    assert len(fetches) == 1 and len(answers) == 6 and len({id(a) for a in answers}) == 1
