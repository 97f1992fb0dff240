"""The chat command language: one module per command group, registered explicitly."""

from __future__ import annotations

from commands.registry import CommandRegistry


def build_registry() -> CommandRegistry:
    """A registry with every command group; each module registers into it explicitly."""
    from commands import approval, audit, backup, cluster, help, job, net, node, notify, snapshot, template, vm

    registry = CommandRegistry()
    for module in (help, vm, template, snapshot, backup, net, cluster, node, job, approval, notify, audit):
        module.register(registry)
    return registry
