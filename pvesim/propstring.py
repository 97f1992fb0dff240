"""Property strings (``virtio=BC:24:11:00:00:01,bridge=vmbr0``), read and written as Proxmox VE does.

The simulator's own parser, written from the rules of pve-common's ``PVE::JSONSchema``
(``parse_property_string`` and ``print_property_string``) and deliberately sharing no code with the
gateway's: if both sides used one parser, a bug in it would pass every gateway test.

The rules, as Proxmox applies them:

- Parts are separated by commas; a part that is empty or only blanks is skipped (``a=1,,b=2``).
- A part is ``key=value``: the key runs to the first ``=``, the value is the rest and may itself hold
  ``=`` (``args=-a=b``). Neither may be empty: ``=x`` and ``x=`` are "missing key" errors.
- A part without ``=`` is the value of the format's default key (``file`` of a disk, ``model`` of a
  NIC, ``current`` of ``memory``); without a default key that is an error.
- A key may appear once; a second bare value is a second default key, and an error too.
- Nothing is trimmed and nothing is quoted: ``bridge = vmbr0`` has the key ``"bridge "``, which no
  format defines, and ``"`` is an ordinary character. A value therefore never holds a comma, and the
  writer refuses one, as ``print_property_string`` does ("illegal value with commas").
- Inside a property string, booleans are ``1|on|yes|true`` and ``0|off|no|false`` in any case
  (``parse_boolean``), unlike top-level API parameters, which take only ``0`` and ``1``.

Key names are not checked here: which keys exist is the format's business (see ``pvesim.schema``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_TRUE = re.compile(r"(?i:1|on|yes|true)")
_FALSE = re.compile(r"(?i:0|off|no|false)")


class PropertyStringError(ValueError):
    """A property string Proxmox would refuse; the message is the one pve-common gives."""


def parse_property_string(value: str, *, default_key: str | None = None) -> dict[str, str]:
    """The keys and values of ``value``, in the order written.

    Args:
        value: the property string, e.g. ``local-lvm:vm-100-disk-0,size=32G``.
        default_key: the key a value without ``=`` belongs to (``file`` for that example).

    Returns:
        ``{key: value}``; a bare value is stored under ``default_key``.

    Raises:
        PropertyStringError: a part without a key or value, a repeated key, or a bare value where the
            format has no default key.
    """
    result: dict[str, str] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        if "\n" in part:
            # config files are line based: a value can never span lines
            raise PropertyStringError("missing key in comma-separated list property")
        key, sep, val = part.partition("=")
        if not sep:
            if default_key is None:
                raise PropertyStringError("value without key, but schema does not define a default key")
            key, val = default_key, part
        elif not key or not val:
            raise PropertyStringError("missing key in comma-separated list property")
        if key in result:
            raise PropertyStringError(f"duplicate key in comma-separated list property: {key}")
        result[key] = val
    return result


def format_property_string(props: Mapping[str, str], *, default_key: str | None = None) -> str:
    """``props`` written back: the default key's value first and bare, then the others in order.

    A default value holding ``=`` is written as ``key=value``, since bare it would read as a key.

    Args:
        props: keys and values, as :func:`parse_property_string` returns them.
        default_key: written without ``key=``, and first.

    Returns:
        The property string.

    Raises:
        PropertyStringError: a value that holds a comma or is empty, or a key that is empty or holds
            ``=`` or ``,``; Proxmox could not read such a string back.
    """
    parts: list[str] = []
    for key, val in props.items():
        if not key or "=" in key or "," in key:
            raise PropertyStringError(f"illegal key '{key}'")
        if "," in val:
            raise PropertyStringError(f"illegal value with commas for {key}")
        if not val:
            raise PropertyStringError(f"empty value for {key}")
        if key == default_key and "=" not in val:
            parts.insert(0, val)
        else:
            parts.append(f"{key}={val}")
    return ",".join(parts)


def parse_boolean(value: str) -> bool | None:
    """A boolean inside a property string, as pve-common reads one; None if it is not one."""
    if _TRUE.fullmatch(value):
        return True
    if _FALSE.fullmatch(value):
        return False
    return None
