"""Proxmox VE: the gateway (``gateway.py``, over proxmoxer). Its simulated counterpart is the ``pvesim`` package."""

from __future__ import annotations

from adapters.proxmox.gateway import ProxmoxHypervisor, ProxmoxHypervisors

__all__ = ["ProxmoxHypervisor", "ProxmoxHypervisors"]
