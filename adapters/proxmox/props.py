"""Proxmox property strings (``virtio=BC:24:11:..,bridge=vmbr0,tag=20``), parsed and rebuilt in order."""

from __future__ import annotations

Pairs = list[tuple[str | None, str]]


def parse_props(value: str) -> Pairs:
    """Key/value pairs in their order; a bare value (the default key) has key None."""
    pairs: Pairs = []
    for part in value.split(","):
        if not part:
            continue
        key, sep, val = part.partition("=")
        pairs.append((key, val) if sep else (None, part))
    return pairs


def format_props(pairs: Pairs) -> str:
    return ",".join(val if key is None else f"{key}={val}" for key, val in pairs)


def with_props(value: str, **changes: str | None) -> str:
    """``value`` with keys set (or removed when None), keeping the order of the others."""
    pairs = parse_props(value)
    out: Pairs = []
    for key, val in pairs:
        if key is not None and key in changes:
            new = changes.pop(key)
            if new is not None:
                out.append((key, new))
        else:
            out.append((key, val))
    out.extend((k, v) for k, v in changes.items() if v is not None)
    return format_props(out)
