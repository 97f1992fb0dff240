"""One cluster's inventory, indexed once per refresh so that a command costs the same at any size.

A :class:`GuestIndex` is built from one inventory answer; the gateway keeps it beside its cached
inventory and every command of the process reads the same one. Lookups by VMID, by lower-cased
name and by pool touch only the guests that match, never the whole cluster: a company's guests
are found through its pools without looking at anyone else's.

An answer's rows become :class:`Guest` values only when a lookup reaches them: at 20,000 guests,
making every value on each refresh cost more than everything else the refresh does, while a
company's command looks at its own few dozen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from core.model import Guest


def name_key(guest: Guest) -> tuple[str, int]:
    """How guests are ordered within a cluster: by lower-cased name, then VMID."""
    return guest.name.lower(), guest.vmid


class RowKey(NamedTuple):
    """What the index needs of a row before it is made into a guest."""

    vmid: int
    name: str
    pool: str | None
    template: bool


def _made(guest: Any) -> Guest:
    assert isinstance(guest, Guest)
    return guest


class GuestIndex:
    """The guests of one cluster, as Proxmox listed them, with the lookups commands need.

    Templates are kept apart from guests: commands act on guests and clone templates, and
    a template never answers a reference to a guest. Immutable once built; safe to share
    between threads (two threads making the same row's guest make equal values).
    """

    def __init__(self, cluster: str, rows: list[Any], keys: list[RowKey], make: Callable[[Any], Guest]) -> None:
        self.cluster = cluster
        self._rows = rows
        self._guests: list[Guest | None] = [None] * len(rows)
        self._make = make
        self._by_vmid: dict[int, int] = {}
        by_name: dict[str, list[int]] = {}
        by_pool: dict[str | None, list[int]] = {}
        templates: list[int] = []
        # each row's sort key, made once: at 20,000 rows the refresh's sorts are most of its work
        order = [(key.name.lower(), key.vmid) for key in keys]
        for i, key in enumerate(keys):
            self._by_vmid[key.vmid] = i
            if key.template:
                templates.append(i)
                continue
            by_name.setdefault(order[i][0], []).append(i)
            by_pool.setdefault(key.pool, []).append(i)

        def ordered(positions: list[int]) -> tuple[int, ...]:
            return tuple(sorted(positions, key=order.__getitem__))

        self._by_name = {k: ordered(v) for k, v in by_name.items()}
        self._by_pool = {k: ordered(v) for k, v in by_pool.items()}
        self._templates = ordered(templates)

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
        keys = [RowKey(g.vmid, g.name, g.pool, g.template) for g in listed]
        return cls(cluster, listed, keys, _made)

    @classmethod
    def of_rows(cls, cluster: str, rows: Iterable[Any], *, key: Callable[[Any], RowKey],
                make: Callable[[Any], Guest]) -> GuestIndex:
        """Index raw inventory rows; ``make`` turns a row into its guest the first time it is looked at.

        Args:
            cluster: the cluster's name.
            rows: its guests' and templates' rows, in any order.
            key: the row's VMID, name, pool and whether it is a template (cheap).
            make: the row as a :class:`Guest`.

        Returns:
            The index; per pool, guests are sorted by :func:`name_key`.
        """
        listed = list(rows)
        return cls(cluster, listed, [key(row) for row in listed], make)

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
        return self._all(self._templates)

    def by_vmid(self, vmid: int) -> Guest | None:
        """The guest or template with ``vmid`` (VMIDs are unique within a cluster)."""
        i = self._by_vmid.get(vmid)
        return None if i is None else self._guest(i)

    def named(self, name: str) -> tuple[Guest, ...]:
        """The guests (not templates) called ``name``, compared without case."""
        return self._all(self._by_name.get(name.lower(), ()))

    def in_pool(self, pool: str | None) -> tuple[Guest, ...]:
        """The guests (not templates) of ``pool`` (``None``: in no pool), sorted by name."""
        return self._all(self._by_pool.get(pool, ()))

    def pools(self) -> tuple[str | None, ...]:
        """Every pool that holds at least one guest."""
        return tuple(self._by_pool)
