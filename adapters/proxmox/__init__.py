"""Proxmox VE: the gateway (``gateway.py``, over proxmoxer) and an API simulator (``simulator/``)."""

from __future__ import annotations

from adapters.proxmox.gateway import ProxmoxHypervisor, ProxmoxHypervisors

__all__ = ["ProxmoxHypervisor", "ProxmoxHypervisors"]
