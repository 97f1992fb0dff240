"""The chat command language: one module per command group, registered explicitly."""

from __future__ import annotations

from commands.registry import CommandRegistry


def build_registry() -> CommandRegistry:
    """A registry with every command group; each module registers into it explicitly."""
    from commands import approval, audit, backup, help, job, net, notify, snapshot, template, vm

    registry = CommandRegistry()
    for module in (help, vm, template, snapshot, backup, net, job, approval, notify, audit):
        module.register(registry)
    return registry
