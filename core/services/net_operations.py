"""Addresses on guests: ``ip assign`` and ``ip release`` as catalog operations.

The address is taken when the request is made (:mod:`core.services.network`); the job writes it into
the guest's config. The end hooks give an address back when its assignment job did not succeed, and
only once a release did: what pvebot records follows what Proxmox was told.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.errors import InvalidArguments
from core.model import Guest
from core.ports import Hypervisor, NicAddress
from core.rbac import Perm
from core.services import ipam
from core.services.deps import Deps
from core.services.operations import Ended, Operation, Step, Target
from core.services.targets import GUEST


def parse_nic(text: str | None) -> int:
    """``net0`` (or ``0``) to 0; NIC indexes are 0 to 31 in Proxmox."""
    raw = (text or "net0").strip().lower().removeprefix("net")
    if not raw.isdigit() or not 0 <= int(raw) <= 31:
        raise InvalidArguments("--nic is net0 to net31")
    return int(raw)


def reboot_needed(guest: Guest) -> bool:
    """A running qemu guest reads its cloud-init network config at boot; pct changes a running container live."""
    return guest.kind == "qemu" and guest.status == "running"


def configure_steps(hv: Hypervisor, guest: Guest, change: NicAddress) -> Iterator[Step]:
    """The calls that put ``change`` on a guest: its config, then (qemu) its cloud-init drive."""
    ref = guest.ref
    yield Step(f"configure net{change.nic}", lambda: hv.set_address(ref, change), on=ref)
    if guest.kind == "qemu":
        yield Step("regenerate cloud-init", lambda: hv.regenerate_cloudinit(ref), on=ref)


def _on(hv: Hypervisor | None, target: Target) -> tuple[Hypervisor, Guest]:
    assert hv is not None and target.guest is not None, "an address operation runs on the guest's cluster"
    return hv, target.guest


def _assign_steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api, guest = _on(hv, target)
    yield from configure_steps(api, guest, ipam.from_params(params))


def _assign_preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    return [("Address", f"{params['cidr']} on net{params['nic']}"), ("Range", str(params["range"])),
            ("Gateway", str(params.get("gateway") or "none")),
            ("VLAN", str(params["vlan"]) if params.get("vlan") is not None else "untagged")]


def _assigned(target: Target, params: dict[str, Any]) -> str:
    where = f"VLAN {params['vlan']}" if params.get("vlan") is not None else f"bridge {params.get('bridge')}"
    done = f"{target.label} net{params['nic']} has {params['cidr']} ({where})"
    if params.get("reboot"):
        return done + "; reboot it for the guest to take the new address (cloud-init applies it at boot)"
    return done + "; no reboot needed"


def _assign_ended(deps: Deps, ended: Ended) -> None:
    if not ended.succeeded and ended.params.get("assignment_id"):
        ipam.release_ids(deps, company_id=ended.company_id, ids=[int(ended.params["assignment_id"])],
                         why="the assignment job did not succeed")


def _release_steps(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> Iterator[Step]:
    api, guest = _on(hv, target)
    for nic in sorted(set(params["nics"])):
        yield from configure_steps(api, guest, NicAddress(nic=int(nic), address=None))


def _release_preview(hv: Hypervisor | None, target: Target, params: dict[str, Any]) -> list[tuple[str, str]]:
    held = ", ".join(f"{a} (net{n})" for a, n in zip(params["addresses"], params["nics"], strict=True))
    state = [("Current state", target.guest.status)] if target.guest is not None else []
    return [("Addresses released", held), *state]


def _released(target: Target, params: dict[str, Any]) -> str:
    return f"released {', '.join(params['addresses'])} from {target.label}"


def _release_ended(deps: Deps, ended: Ended) -> None:
    if ended.succeeded:
        ipam.release_ids(deps, company_id=ended.company_id, ids=[int(i) for i in ended.params["assignment_ids"]],
                         why="released")


OPERATIONS: tuple[Operation, ...] = (
    Operation("ip.assign", Perm.IP_ASSIGN, "assign an address to",
              "Give a VM's NIC the next free address of its company's range (or --ip A), with its VLAN.", GUEST,
              _assign_steps, preview=_assign_preview, result=_assigned, ended=_assign_ended),
    Operation("ip.release", Perm.IP_RELEASE, "release the addresses of",
              "Take pvebot's addresses off a VM and give them back to their range.", GUEST, _release_steps,
              preview=_release_preview, result=_released, approval=True, ended=_release_ended),
)
