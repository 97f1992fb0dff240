"""Address arithmetic: usable addresses, blocked blocks, and the lowest free address found two ways."""

from __future__ import annotations

import bisect
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import InvalidArguments
from core.model import IpRange
from core.services import addresses


def _range(reserved: list[str], gateway: str | None = "10.0.0.1", cidr: str = "10.0.0.0/26") -> IpRange:
    return IpRange(company_id=1, cluster_id=1, name="r", cidr=cidr, gateway=gateway, bridge="vmbr0",
                   reserved=reserved)


def test_a_range_never_hands_out_network_broadcast_gateway_or_reserved() -> None:
    rng = _range(["10.0.0.2-10.0.0.10", "10.0.0.62"])
    assert addresses.capacity(rng) == 62 - 1 - 9 - 1
    assert addresses.lowest_free(rng, []) == addresses.number_of("10.0.0.11")
    for text in ("10.0.0.0", "10.0.0.1", "10.0.0.5", "10.0.0.62", "10.0.0.63"):
        assert not addresses.is_assignable(rng, addresses.number_of(text))
    full = [n for n in range(*addresses.usable(rng)) if addresses.is_assignable(rng, n)] + [addresses.usable(rng)[1]]
    assert addresses.lowest_free(rng, sorted(full)) is None


@settings(max_examples=200, deadline=None)
@given(reserved=st.lists(st.tuples(st.integers(1, 62), st.integers(0, 6)), max_size=4),
       taken=st.sets(st.integers(1, 62)))
def test_the_database_walk_finds_what_the_python_walk_finds(reserved: list[tuple[int, int]], taken: set[int]) -> None:
    rng = _range([f"10.0.0.{lo}-10.0.0.{min(62, lo + width)}" for lo, width in reserved])
    base = addresses.usable(rng)[0] - 1
    numbers = sorted(base + n for n in taken)

    def first_free(start: int) -> int:  # what the repository's index walk answers
        n = start
        i = bisect.bisect_left(numbers, n)
        while i < len(numbers) and numbers[i] == n:
            n, i = n + 1, i + 1
        return n

    assert addresses.lowest_free_with(rng, first_free) == addresses.lowest_free(rng, numbers)


@settings(max_examples=300, deadline=None)
@given(number=st.integers(0, 2**32 - 1), prefix=st.integers(0, 32))
def test_a_network_is_named_by_its_text_and_a_host_inside_it_is_refused(number: int, prefix: int) -> None:
    network = ipaddress.IPv4Network((number, prefix), strict=False)
    assert addresses.network_named(str(network)) == network
    written = f"{ipaddress.IPv4Address(number)}/{prefix}"
    if ipaddress.IPv4Address(number) != network.network_address:
        with pytest.raises(InvalidArguments, match=f"the network is {network}"):
            addresses.network_named(written)


def test_what_is_not_a_network_is_a_name_or_a_clear_refusal() -> None:
    for name in ("acme-prod", "acme/prod", "10-20-0-0"):
        assert addresses.network_named(name) is None
    for text, reason in (("10.20.0.0/33", "the prefix is /0 to /32"), ("300.1.1.0/24", "not a network like"),
                         ("10.20.0/24", "not a network like"), ("10.20.0.0/999999", "the prefix is /0 to /32")):
        with pytest.raises(InvalidArguments, match=reason):
            addresses.network_named(text)


def test_a_network_that_must_be_one_is_refused_in_the_same_words_as_chat_uses() -> None:
    for text, reason in (("prod", "is not a network like"), ("10.20.0.0", "is not a network like"),
                         ("10.20.0.0/²", "is not a network like"), ("10.20.0.0/33", "the prefix is /0 to /32"),
                         ("10.20.0.7/24", "the network is 10.20.0.0/24")):
        with pytest.raises(InvalidArguments, match=reason):
            addresses.parse_network(text)
    assert addresses.parse_network("10.20.0.0/24") == ipaddress.IPv4Network("10.20.0.0/24")
