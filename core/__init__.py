"""pvebot's domain: model, services, RBAC, tenancy, approvals and audit.

Nothing here imports a chat SDK, a queue, a database driver or a hypervisor client;
the outside world is reached only through the Protocols in :mod:`core.ports`.
"""
