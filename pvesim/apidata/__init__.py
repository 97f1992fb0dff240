"""The subset of the official Proxmox VE API schema that pvebot uses, shipped with the package.

``endpoints-pve8.4-subset.json`` holds, unchanged, the entries of ``endpoints-pve8.4.json`` (the PVE
API viewer's ``apidata.js`` from ``proxmox/pve-docs`` 8.4.2, turned into JSON) for every
(method, path) the gateway calls, plus the format regexes of ``formats.json`` (from
``proxmox/pve-common`` ``JSONSchema.pm``/``Tools.pm``). ``refresh.py`` regenerates it from
``../shared/pve-api``; nothing reads that directory at runtime.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SUBSET_FILE = "endpoints-pve8.4-subset.json"


@cache
def load_subset() -> dict[str, Any]:
    """``{"_source": ..., "formats": {...}, "endpoints": [...]}`` as shipped."""
    text = resources.files(__package__).joinpath(SUBSET_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
