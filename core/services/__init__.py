"""Use cases: functions that take a principal, a unit of work and ports, check RBAC, then act."""
