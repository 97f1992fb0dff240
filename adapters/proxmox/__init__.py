"""adapters/proxmox."""
