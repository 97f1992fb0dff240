"""Network endpoints: a node's interfaces, a guest's NICs and cloud-init network settings.

What qemu-server and pct check when a NIC or its address changes: the bridge must exist on the node
when the change is applied to a running guest (``bridge 'X' does not exist``), a NIC sent without
its MAC gets a new one, and an ``ipconfigN`` gateway needs an address of its family.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pvesim.context import Call, SimContext, route
from pvesim.propstring import PropertyStringError, format_property_string, parse_property_string
from pvesim.state import ApiError, SimGuest, SimNode, new_mac
from pvesim.tasks import TaskFailed

NET_KEY = re.compile(r"^net(\d+)$")
IPCONFIG_KEY = re.compile(r"^ipconfig(\d+)$")
# the options that go into the generated cloud-init drive (qemu-server's cloudinit keys, those we model)
CLOUDINIT_KEYS = re.compile(r"^(ipconfig\d+|nameserver|searchdomain|ciuser|cipassword|sshkeys|citype)$")
QEMU_MODELS = ("e1000", "e1000-82540em", "e1000-82544gc", "e1000-82545em", "e1000e", "i82551", "i82557b",
               "i82559er", "ne2k_isa", "ne2k_pci", "pcnet", "rtl8139", "virtio", "vmxnet3")
TYPE_FILTERS = {"any_bridge": ("bridge", "OVSBridge"), "any_local_bridge": ("bridge", "OVSBridge")}


@route("GET", "/nodes/{node}/network")
async def node_network(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        node = ctx.state.node(call.node)
        wanted = call.params.get("type")
        kinds = TYPE_FILTERS.get(wanted, (wanted,)) if wanted else None
        return [dict(row) for _, row in sorted(node.network.items()) if kinds is None or row.get("type") in kinds]


@route("PUT", "/nodes/{node}/qemu/{vmid}/cloudinit")
async def regenerate_cloudinit(ctx: SimContext, call: Call) -> Any:
    with ctx.state.lock:
        guest = ctx.guest(call)
    await ctx.wait_lock_file(guest)
    with ctx.state.lock:
        regenerate(guest)
    return None


def regenerate(guest: SimGuest) -> None:
    """Write the cloud-init drive from the config; a VM without a cloud-init drive is left alone, silently."""
    if not any("cloudinit" in value for key, value in guest.config.items() if re.match(r"^(ide|sata|scsi)\d+$", key)):
        return
    guest.cloudinit = {k: v for k, v in guest.config.items() if CLOUDINIT_KEYS.match(k)}


def check_params(guest: SimGuest, params: dict[str, str]) -> None:
    """Refuse what the API refuses at once (HTTP 400), as parameter verification does."""
    errors: dict[str, str] = {}
    for key, value in params.items():
        if guest.kind == "qemu" and IPCONFIG_KEY.match(key):
            problem = _ipconfig_problem(value)
            if problem:
                errors[key] = problem
        elif guest.kind == "lxc" and NET_KEY.match(key):
            problem = _lxc_ip_problem(value)
            if problem:
                errors[key] = problem
    if errors:
        raise ApiError(400, "Parameter verification failed.", errors=errors)


def _ipconfig_problem(value: str) -> str | None:
    try:
        props = parse_property_string(value, default_key=None)
    except PropertyStringError as e:
        return f"invalid format - {e}"
    ip, gw = props.get("ip"), props.get("gw")
    if gw is not None and ip is None:
        return "invalid format - gateway specified without specifying an IP address"
    if ip is not None and ip != "dhcp":
        try:
            ipaddress.IPv4Interface(ip)
        except ValueError:
            return f"invalid format - invalid IPv4 address/CIDR '{ip}'"
        if "/" not in ip:
            return f"invalid format - invalid IPv4 address/CIDR '{ip}'"
    if gw is not None:
        try:
            ipaddress.IPv4Address(gw)
        except ValueError:
            return f"invalid format - invalid IPv4 gateway '{gw}'"
    return None


def _lxc_ip_problem(value: str) -> str | None:
    props = parse_property_string(value, default_key=None)
    ip = props.get("ip")
    if ip is not None and ip not in ("dhcp", "manual"):
        try:
            ipaddress.IPv4Interface(ip)
        except ValueError:
            return "invalid format - ip: value does not look like a valid IPv4 network configuration"
    return None


def complete_nics(guest: SimGuest, params: dict[str, str]) -> dict[str, str]:
    """``params`` with a new MAC in every NIC sent without one, as qemu-server and pct write them."""
    out = dict(params)
    for key, value in params.items():
        if not NET_KEY.match(key):
            continue
        if guest.kind == "qemu":
            props = parse_property_string(value, default_key="model")
            model = props.get("model", "virtio")
            if not props.get("macaddr") and not any(":" in props.get(m, "") for m in QEMU_MODELS):
                props.pop("model", None)
                props = {model: new_mac(), **props}
                out[key] = format_property_string(props, default_key=None)
        elif "hwaddr=" not in value:
            out[key] = value + f",hwaddr={new_mac()}"
    return out


def check_bridges(guest: SimGuest, node: SimNode, config: dict[str, str]) -> None:
    """A NIC plugged in (start, or a change of a running guest) needs its bridge: ``tap_plug`` dies otherwise."""
    for key, value in sorted(config.items()):
        if not NET_KEY.match(key):
            continue
        props = parse_property_string(value, default_key="model" if guest.kind == "qemu" else None)
        bridge = props.get("bridge")
        if bridge and bridge not in node.bridges():
            raise TaskFailed(f"bridge '{bridge}' does not exist")
