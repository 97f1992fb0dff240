"""Address arithmetic for IP ranges: which addresses a range may hand out, and the lowest free one.

Pure functions over :class:`core.model.IpRange` and sorted integers, so that allocation is one
read of the taken numbers and one walk, whatever the size of the range.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Sequence

from core.errors import InvalidArguments
from core.model import IpRange

Block = tuple[int, int]
_WRITTEN_AS_NETWORK = re.compile(r"^[0-9.]+/[0-9]+$")


def network(rng: IpRange) -> ipaddress.IPv4Network:
    net = ipaddress.ip_network(rng.cidr, strict=True)
    assert isinstance(net, ipaddress.IPv4Network), "ranges are IPv4"
    return net


def usable(rng: IpRange) -> Block:
    """The first and last address a host may have: not the network or broadcast address (but all of a /31)."""
    net = network(rng)
    first, last = int(net.network_address), int(net.broadcast_address)
    return (first, last) if net.prefixlen >= 31 else (first + 1, last - 1)


def parse_block(text: str) -> Block:
    """``10.0.0.5`` or ``10.0.0.1-10.0.0.10`` as the first and last number."""
    first, sep, last = text.partition("-")
    try:
        lo = int(ipaddress.IPv4Address(first.strip()))
        hi = int(ipaddress.IPv4Address(last.strip())) if sep else lo
    except ValueError:
        raise InvalidArguments(f"'{text[:40]}' is not an address or a block like 10.0.0.1-10.0.0.10") from None
    if hi < lo:
        raise InvalidArguments(f"block '{text[:40]}' ends before it starts")
    return lo, hi


def blocked(rng: IpRange) -> list[Block]:
    """Addresses never handed out (the gateway and the reserved blocks), merged and sorted."""
    blocks = [parse_block(b) for b in rng.reserved]
    if rng.gateway:
        gw = int(ipaddress.IPv4Address(rng.gateway))
        blocks.append((gw, gw))
    merged: list[Block] = []
    for lo, hi in sorted(blocks):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def capacity(rng: IpRange) -> int:
    """How many addresses the range can hand out in all."""
    first, last = usable(rng)
    inside = sum(max(0, min(hi, last) - max(lo, first) + 1) for lo, hi in blocked(rng))
    return last - first + 1 - inside


def is_assignable(rng: IpRange, number: int) -> bool:
    first, last = usable(rng)
    return first <= number <= last and not any(lo <= number <= hi for lo, hi in blocked(rng))


def lowest_free_with(rng: IpRange, first_free: Callable[[int], int]) -> int | None:
    """The lowest address of ``rng`` neither blocked nor taken, where ``first_free(n)`` is the lowest number at
    or above ``n`` that is not taken; None when the range is full. One call per blocked block crossed."""
    first, last = usable(rng)
    blocks = blocked(rng)
    candidate = first
    while candidate <= last:
        inside = next((hi for lo, hi in blocks if lo <= candidate <= hi), None)
        if inside is not None:
            candidate = inside + 1
            continue
        free = first_free(candidate)
        if free == candidate:
            return candidate
        candidate = free
    return None


def lowest_free(rng: IpRange, taken: Sequence[int]) -> int | None:
    """The lowest address of ``rng`` that is neither blocked nor in ``taken`` (ascending), or None when full."""
    first, last = usable(rng)
    blocks = blocked(rng)
    candidate, b, t = first, 0, 0
    while candidate <= last:
        if b < len(blocks) and blocks[b][1] < candidate:
            b += 1
        elif b < len(blocks) and blocks[b][0] <= candidate:
            candidate = blocks[b][1] + 1
        elif t < len(taken) and taken[t] < candidate:
            t += 1
        elif t < len(taken) and taken[t] == candidate:
            candidate += 1
            t += 1
        else:
            return candidate
    return None


def number_of(address: str) -> int:
    try:
        return int(ipaddress.IPv4Address(address))
    except ValueError:
        raise InvalidArguments(f"'{address[:40]}' is not an IPv4 address") from None


def network_named(text: str) -> ipaddress.IPv4Network | None:
    """The network ``text`` is written as (``10.20.0.0/24``), or None when it is a range's name.

    Raises:
        InvalidArguments: written as a network, but not one (``10.20.0.0/33``, ``10.20.0.5/24``).
    """
    return parse_network(text) if _WRITTEN_AS_NETWORK.match(text) else None


def parse_network(text: str) -> ipaddress.IPv4Network:
    """``10.20.0.0/24`` as a network; anything else refused, saying why.

    Raises:
        InvalidArguments: a prefix above /32, host bits set (the network meant is named), or no IPv4 network.
    """
    address, slash, prefix = text.partition("/")
    if not slash or not (prefix.isascii() and prefix.isdigit()):
        raise InvalidArguments(f"'{text[:40]}' is not a network like 10.20.0.0/24")
    if int(prefix) > 32:
        raise InvalidArguments(f"'{text[:40]}' is not a network: the prefix is /0 to /32")
    try:
        net = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise InvalidArguments(f"'{text[:40]}' is not a network like 10.20.0.0/24") from None
    if net.network_address != ipaddress.IPv4Address(address):
        raise InvalidArguments(f"'{text[:40]}' has host bits set: the network is {net}")
    return net


def text_of(number: int) -> str:
    return str(ipaddress.IPv4Address(number))


def containing(ranges: Iterable[IpRange], number: int) -> list[IpRange]:
    return [r for r in ranges if int(network(r).network_address) <= number <= int(network(r).broadcast_address)]


def overlaps(a: IpRange, b: IpRange) -> bool:
    return network(a).overlaps(network(b))
