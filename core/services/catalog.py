"""The operation catalog: every operation pvebot offers, by name.

Add an operation by adding its entry here (or, for a plug-in or a test, ``CATALOG.registered(op)``);
commands, help, the approval policy, the approval service and the job runner all read it from here.
"""

from __future__ import annotations

from core.services import (
    backup_operations,
    backup_schedules,
    key_operations,
    net_operations,
    node_updates,
    vm_operations,
)
from core.services.operations import Catalog, Operation

CATALOG = Catalog(vm_operations.OPERATIONS + net_operations.OPERATIONS + backup_operations.OPERATIONS
                  + backup_schedules.OPERATIONS + key_operations.OPERATIONS + node_updates.OPERATIONS)


def get(name: str) -> Operation:
    return CATALOG.get(name)
