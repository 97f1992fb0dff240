"""One cluster's inventory, indexed once per refresh so that a command costs the same at any size.

A :class:`GuestIndex` is built from one inventory answer; the gateway keeps it beside its cached
inventory and every command of the process reads the same one. Lookups by VMID, by lower-cased
name and by pool touch only the guests that match, never the whole cluster: a company's guests
are found through its pools without looking at anyone else's.

A refresh files each row by VMID and pool and nothing more. A pool's guests are named and sorted
the first time a lookup reaches that pool, and a row becomes a :class:`Guest` value only when a
lookup returns it: at 20,000 guests, naming, sorting and making every row on each refresh cost more
than everything else the refresh does, while a company's command looks at its own few dozen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from core.model import Guest


def name_key(guest: Guest) -> tuple[str, int]:
    """How guests are ordered within a cluster: by lower-cased name, then VMID."""
    return guest.name.lower(), guest.vmid


class RowPlace(NamedTuple):
    """What a refresh reads of every row: where the guest is looked up from. Its name waits for a lookup."""

    vmid: int
    pool: str | None
    template: bool


class _Pool(NamedTuple):
    """One pool's guests, named: sorted by :func:`name_key`, and by lower-cased name."""

    ordered: tuple[int, ...]
    by_name: dict[str, tuple[int, ...]]


def _made(guest: Any) -> Guest:
    assert isinstance(guest, Guest)
    return guest


class GuestIndex:
    """The guests of one cluster, as Proxmox listed them, with the lookups commands need.

    Templates are kept apart from guests: commands act on guests and clone templates, and
    a template never answers a reference to a guest. A refresh only places each row by VMID
    and pool; a pool's guests are named and sorted the first time a lookup asks for that
    pool, so a company's command pays for its own pools and never for the others' names.
    Immutable in what it answers; safe to share between threads (two threads filling in
    the same lazy part make equal values, and either one's is kept).
    """

    def __init__(self, cluster: str, rows: list[Any], places: Iterable[RowPlace], *,
                 name: Callable[[Any], str], make: Callable[[Any], Guest]) -> None:
        self.cluster = cluster
        self._rows = rows
        self._guests: list[Guest | None] = [None] * len(rows)
        self._name = name
        self._make = make
        self._by_vmid: dict[int, int] = {}
        self._vmids: list[int] = []
        by_pool: dict[str | None, list[int]] = {}
        templates: list[int] = []
        for i, (vmid, pool, template) in enumerate(places):
            self._by_vmid[vmid] = i
            self._vmids.append(vmid)
            if template:
                templates.append(i)
            else:
                by_pool.setdefault(pool, []).append(i)
        self._by_pool = by_pool
        self._template_rows = templates
        self._pools: dict[str | None, _Pool] = {}  # filled in per pool on first use
        self._templates: tuple[int, ...] | None = None

    @classmethod
    def build(cls, cluster: str, guests: Iterable[Guest]) -> GuestIndex:
        """Index ``guests`` (one inventory answer of ``cluster``, already made into values).

        Args:
            cluster: the cluster's name.
            guests: its guests and templates, in any order.

        Returns:
            The index; per pool, guests are sorted by :func:`name_key`.
        """
        listed: list[Any] = list(guests)
        places = [RowPlace(g.vmid, g.pool, g.template) for g in listed]
        return cls(cluster, listed, places, name=lambda g: str(g.name), make=_made)

    @classmethod
    def of_rows(cls, cluster: str, rows: Iterable[Any], *, place: Callable[[Any], RowPlace],
                name: Callable[[Any], str], make: Callable[[Any], Guest]) -> GuestIndex:
        """Index raw inventory rows; ``make`` turns a row into its guest the first time it is looked at.

        Args:
            cluster: the cluster's name.
            rows: its guests' and templates' rows, in any order.
            place: the row's VMID, pool and whether it is a template (cheap: every row, every refresh).
            name: the row's guest's name (asked only of the rows a lookup reaches).
            make: the row as a :class:`Guest`.

        Returns:
            The index; per pool, guests are sorted by :func:`name_key`.
        """
        listed = list(rows)
        return cls(cluster, listed, map(place, listed), name=name, make=make)

    def _keyed(self, positions: Iterable[int]) -> list[tuple[str, int, int]]:
        """(lower-cased name, VMID, row) of each row, in :func:`name_key` order."""
        rows, name, vmids = self._rows, self._name, self._vmids
        return sorted((name(rows[i]).lower(), vmids[i], i) for i in positions)

    def _sorted(self, positions: Iterable[int]) -> tuple[int, ...]:
        return tuple(i for _, _, i in self._keyed(positions))

    def _pool(self, pool: str | None) -> _Pool:
        filled = self._pools.get(pool)
        if filled is None:
            # each of the pool's rows named once, for both its order and its name look-up
            keyed = self._keyed(self._by_pool.get(pool, ()))
            names: dict[str, list[int]] = {}
            for lowered, _, i in keyed:
                names.setdefault(lowered, []).append(i)
            filled = self._pools[pool] = _Pool(tuple(i for _, _, i in keyed),
                                               {k: tuple(v) for k, v in names.items()})
        return filled

    def _guest(self, i: int) -> Guest:
        guest = self._guests[i]
        if guest is None:
            guest = self._guests[i] = self._make(self._rows[i])
        return guest

    def _all(self, positions: Iterable[int]) -> tuple[Guest, ...]:
        return tuple(self._guest(i) for i in positions)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def guests(self) -> tuple[Guest, ...]:
        """Every guest and template, in the order Proxmox listed them (makes them all)."""
        return self._all(range(len(self._rows)))

    @property
    def templates(self) -> tuple[Guest, ...]:
        """The templates, sorted by name."""
        if self._templates is None:
            self._templates = self._sorted(self._template_rows)
        return self._all(self._templates)

    def by_vmid(self, vmid: int) -> Guest | None:
        """The guest or template with ``vmid`` (VMIDs are unique within a cluster)."""
        i = self._by_vmid.get(vmid)
        return None if i is None else self._guest(i)

    def named(self, name: str, *, pools: Iterable[str | None] | None = None) -> tuple[Guest, ...]:
        """The guests (not templates) called ``name``, compared without case, sorted as :func:`name_key`.

        Args:
            name: the name to look for.
            pools: look only in these pools (a company's own); None: in every pool, which names
                every guest of the cluster once per refresh.
        """
        wanted = name.lower()
        searched = self._by_pool if pools is None else pools
        found = [i for pool in searched for i in self._pool(pool).by_name.get(wanted, ())]
        return self._all(self._sorted(found) if len(found) > 1 else found)

    def in_pool(self, pool: str | None) -> tuple[Guest, ...]:
        """The guests (not templates) of ``pool`` (``None``: in no pool), sorted by name."""
        return self._all(self._pool(pool).ordered)

    def pools(self) -> tuple[str | None, ...]:
        """Every pool that holds at least one guest."""
        return tuple(self._by_pool)
