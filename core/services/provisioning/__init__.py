"""Declarative provisioning: one document describes clusters, companies and users.

``validate`` (in :mod:`.document`) checks a whole document and reports every problem with
where it is; ``apply`` and ``export`` (in :mod:`.state`) change the database to match it and
write the current state back in the same shape, without secrets.
"""

from __future__ import annotations

from core.services.provisioning.document import (
    APPROVABLE_ACTIONS,
    QUOTA_KEYS,
    ClusterSpec,
    CompanySpec,
    GroupSpec,
    IdentitySpec,
    Locate,
    NetworkSpec,
    PathT,
    Spec,
    UserSpec,
    validate,
)
from core.services.provisioning.state import apply, export

__all__ = [
    "APPROVABLE_ACTIONS",
    "QUOTA_KEYS",
    "ClusterSpec",
    "CompanySpec",
    "GroupSpec",
    "IdentitySpec",
    "Locate",
    "NetworkSpec",
    "PathT",
    "Spec",
    "UserSpec",
    "apply",
    "export",
    "validate",
]
