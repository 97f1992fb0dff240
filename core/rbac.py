"""Role-based access control: the permission matrix is data, checked by one function.

The chat layer's ``permission=`` on a command is only an early hint for help and error
text; every service calls :func:`require` itself before it acts.
"""

from __future__ import annotations

import enum

from core.errors import NotFound, PermissionDenied
from core.model import Role
from core.principal import Principal


class Perm(enum.StrEnum):
    VM_READ = "vm.read"
    VM_OPERATE = "vm.operate"  # start, shutdown, reboot, suspend, resume
    VM_CREATE = "vm.create"
    VM_DESTROY = "vm.destroy"  # stop, reset, delete: always through an approval request
    SNAPSHOT_READ = "snapshot.read"
    SNAPSHOT_CREATE = "snapshot.create"
    SNAPSHOT_DESTROY = "snapshot.destroy"  # rollback, delete: through an approval request
    NET_READ = "net.read"  # net list, net show, vlan list
    IP_ASSIGN = "ip.assign"
    IP_RELEASE = "ip.release"  # through an approval request
    NET_AUDIT = "net.audit"
    BACKUP_READ = "backup.read"  # list, status, history, schedules
    BACKUP_CREATE = "backup.create"  # back up now, protect
    BACKUP_RESTORE = "backup.restore"  # through an approval request
    BACKUP_DELETE = "backup.delete"  # delete (through an approval request), unprotect
    BACKUP_SCHEDULE = "backup.schedule"  # create, edit, delete and run schedules
    NOTIFY_READ = "notify.read"  # notify list
    NOTIFY_MANAGE = "notify.manage"  # subscribe, unsubscribe, test
    JOB_READ = "job.read"
    JOB_CANCEL = "job.cancel"
    APPROVAL_REQUEST = "approval.request"
    APPROVAL_DECIDE = "approval.decide"
    AUDIT_READ = "audit.read"
    USER_MANAGE = "user.manage"
    COMPANY_MANAGE = "company.manage"
    CLUSTER_MANAGE = "cluster.manage"  # SSH keys, host key pins, node updates
    CLUSTER_READ = "cluster.read"  # cluster list and status (a company's: its clusters, no node internals)
    NODE_UPGRADE = "node.upgrade"  # through an approval request


_READ = frozenset({Perm.VM_READ, Perm.SNAPSHOT_READ, Perm.BACKUP_READ, Perm.JOB_READ, Perm.NET_READ,
                   Perm.NOTIFY_READ})
_OPERATE = _READ | {
    Perm.VM_OPERATE,
    Perm.VM_CREATE,
    Perm.VM_DESTROY,
    Perm.SNAPSHOT_CREATE,
    Perm.SNAPSHOT_DESTROY,
    Perm.BACKUP_CREATE,
    Perm.BACKUP_RESTORE,
    Perm.JOB_CANCEL,
    Perm.APPROVAL_REQUEST,
    Perm.IP_ASSIGN,
}
# ranges themselves change only through provisioning, which is a super_admin's tool outside chat
_ADMIN = _OPERATE | {Perm.BACKUP_DELETE, Perm.BACKUP_SCHEDULE, Perm.APPROVAL_DECIDE, Perm.AUDIT_READ,
                     Perm.USER_MANAGE, Perm.IP_RELEASE, Perm.NET_AUDIT, Perm.NOTIFY_MANAGE, Perm.CLUSTER_READ}

# The one place that says who may do what. The README prints it (``pvebot admin matrix``).
MATRIX: dict[Role, frozenset[Perm]] = {
    Role.SUPER_ADMIN: frozenset(Perm),
    Role.COMPANY_ADMIN: frozenset(_ADMIN),
    Role.USER: frozenset(_OPERATE),
    Role.SALESPERSON: _READ,
}

# Permissions whose use is confined to the principal's scope; the others are global.
GLOBAL_PERMS = frozenset({Perm.COMPANY_MANAGE, Perm.CLUSTER_MANAGE, Perm.NODE_UPGRADE})


def allows(role: Role, perm: Perm) -> bool:
    return perm in MATRIX[role]


def can(principal: Principal, perm: Perm, company_id: int | None = None) -> bool:
    """Whether ``principal`` may use ``perm`` on something of ``company_id`` (None: nothing specific)."""
    if not allows(principal.role, perm):
        return False
    return company_id is None or principal.scope.contains(company_id)


def require(principal: Principal, perm: Perm, company_id: int | None = None, *, what: str = "that") -> None:
    """Raise unless ``principal`` may use ``perm`` on a resource of ``company_id``.

    Args:
        principal: who acts.
        perm: what they want to do.
        company_id: the company owning the resource, or None for an action on no resource.
        what: how to name the resource if it must answer "not found".

    Raises:
        NotFound: the resource is outside the principal's scope; it answers exactly like a
            missing one, so that nobody learns what other companies have.
        PermissionDenied: the role does not allow ``perm``.
    """
    if company_id is not None and not principal.scope.contains(company_id):
        raise NotFound(f"{what} not found")
    if not allows(principal.role, perm):
        raise PermissionDenied(f"your role ({principal.role.value}) does not allow {perm.value}")


def matrix_markdown() -> str:
    """The permission matrix as a Markdown table, as the README shows it."""
    roles = [Role.SUPER_ADMIN, Role.COMPANY_ADMIN, Role.USER, Role.SALESPERSON]
    head = "| permission | " + " | ".join(r.value for r in roles) + " |"
    sep = "|---|" + "---|" * len(roles)
    rows = [
        f"| `{p.value}` | " + " | ".join("yes" if allows(r, p) else "—" for r in roles) + " |" for p in Perm
    ]
    return "\n".join([head, sep, *rows])
