"""One cluster's inventory, indexed once per refresh so that a command costs the same at any size.

A :class:`GuestIndex` is immutable and built from one inventory answer; the gateway keeps it
beside its cached inventory and every command of the process reads the same one. Lookups by
VMID, by lower-cased name and by pool touch only the guests that match, never the whole
cluster: a company's guests are found through its pools without looking at anyone else's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from core.model import Guest


def name_key(guest: Guest) -> tuple[str, int]:
    """How guests are ordered within a cluster: by lower-cased name, then VMID."""
    return guest.name.lower(), guest.vmid


@dataclass(frozen=True)
class GuestIndex:
    """The guests of one cluster, as Proxmox listed them, with the lookups commands need.

    Templates are kept apart from guests: commands act on guests and clone templates, and
    a template never answers a reference to a guest.
    """

    cluster: str
    guests: tuple[Guest, ...] = ()
    _by_vmid: dict[int, Guest] = field(default_factory=dict, repr=False)
    _by_name: dict[str, tuple[Guest, ...]] = field(default_factory=dict, repr=False)
    _by_pool: dict[str | None, tuple[Guest, ...]] = field(default_factory=dict, repr=False)
    templates: tuple[Guest, ...] = ()

    @classmethod
    def build(cls, cluster: str, guests: Iterable[Guest]) -> GuestIndex:
        """Index ``guests`` (one inventory answer of ``cluster``).

        Args:
            cluster: the cluster's name.
            guests: its guests and templates, in any order.

        Returns:
            The index; per pool, guests are sorted by :func:`name_key`.
        """
        listed = tuple(guests)
        by_vmid: dict[int, Guest] = {}
        by_name: dict[str, list[Guest]] = {}
        by_pool: dict[str | None, list[Guest]] = {}
        templates: list[Guest] = []
        for g in listed:
            by_vmid[g.vmid] = g
            if g.template:
                templates.append(g)
                continue
            by_name.setdefault(g.name.lower(), []).append(g)
            by_pool.setdefault(g.pool, []).append(g)
        return cls(
            cluster=cluster,
            guests=listed,
            _by_vmid=by_vmid,
            _by_name={k: tuple(sorted(v, key=name_key)) for k, v in by_name.items()},
            _by_pool={k: tuple(sorted(v, key=name_key)) for k, v in by_pool.items()},
            templates=tuple(sorted(templates, key=name_key)),
        )

    def __len__(self) -> int:
        return len(self.guests)

    def by_vmid(self, vmid: int) -> Guest | None:
        """The guest or template with ``vmid`` (VMIDs are unique within a cluster)."""
        return self._by_vmid.get(vmid)

    def named(self, name: str) -> tuple[Guest, ...]:
        """The guests (not templates) called ``name``, compared without case."""
        return self._by_name.get(name.lower(), ())

    def in_pool(self, pool: str | None) -> tuple[Guest, ...]:
        """The guests (not templates) of ``pool`` (``None``: in no pool), sorted by name."""
        return self._by_pool.get(pool, ())

    def pools(self) -> tuple[str | None, ...]:
        """Every pool that holds at least one guest."""
        return tuple(self._by_pool)
