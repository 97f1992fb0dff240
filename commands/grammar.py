"""The command language shared by every adapter: ``<group> <verb> [args] [--flag value]``.

Quoting follows the shell (``vm create "web 01"``). Slack's ``/pve`` and Teams' ``pve`` or
@mention prefixes are stripped by the adapters before the text gets here.
"""

from __future__ import annotations

import difflib
import functools
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

from commands.registry import Args, CommandRegistry, CommandSpec, convert
from core.chat import TYPOGRAPHIC_QUOTES
from core.errors import InvalidArguments, NotFound


@dataclass(frozen=True)
class Parsed:
    spec: CommandSpec
    args: Args


class UnknownCommand(NotFound):
    """No command matches; the message offers the closest ones."""


def tokenize(text: str) -> list[str]:
    text = text.translate(TYPOGRAPHIC_QUOTES)
    try:
        return shlex.split(text)
    except ValueError:
        raise InvalidArguments("unbalanced quotes in the command") from None


def kept_text(text: str, registry: CommandRegistry) -> str:
    """The typed line as the audit trail keeps it: the value of each secret-prone flag masked.

    Read from the text itself, not from a parse, so that a line that does not parse (a typo in the
    command's name, unbalanced quotes) is masked too.
    """
    names = registry.secret_prone_flags
    if not names:
        return text
    return _secret_values(names).sub(r"\1***", text.translate(TYPOGRAPHIC_QUOTES))


@functools.cache
def _secret_values(names: frozenset[str]) -> re.Pattern[str]:
    flags = "|".join(re.escape(n) for n in sorted(names))
    # a shell word: quoted parts (to their closing quote, or to the end of an unbalanced line) and bare characters
    word = r"""(?:"[^"]*(?:"|$)|'[^']*(?:'|$)|[^\s"']+)+"""
    return re.compile(rf"(--(?:{flags})(?:=|\s+))({word})", re.IGNORECASE)


def parse(text: str, registry: CommandRegistry, *, usable: Callable[[CommandSpec], bool] | None = None) -> Parsed:
    """Find the command (longest name first) and parse its arguments.

    ``usable``: the commands the caller may use, the only ones an unknown command's message suggests.

    Raises:
        UnknownCommand: nothing matches; the message names the closest commands.
        InvalidArguments: missing, surplus or malformed arguments; the message shows the usage.
    """
    tokens = tokenize(text)
    if not tokens:
        tokens = ["help"]
    spec = None
    # the longest names first: "backup schedule create" before "backup schedule" before "backup"
    for width in range(registry.widest, 0, -1):
        candidate = " ".join(t.lower() for t in tokens[:width])
        spec = registry.get(candidate) if len(tokens) >= width else None
        if spec is not None:
            tokens = tokens[width:]
            break
    if spec is None:
        raise UnknownCommand(_unknown_message(tokens, registry, usable))
    help_spec = registry.get("help")
    if help_spec is not None and _asks_for_help(spec, tokens):
        # "vm create --help", as a shell user types it: that command's usage, not "unknown option"
        words = [t for t in tokens if t.lower() not in _HELP_FLAGS] if spec is help_spec else [spec.name]
        return Parsed(spec=help_spec, args=Args(values={"group": " ".join(words) or None}))
    return Parsed(spec=spec, args=_bind(spec, tokens))


_HELP_FLAGS = ("--help", "-h")


def _asks_for_help(spec: CommandSpec, tokens: list[str]) -> bool:
    return any(t.lower() in _HELP_FLAGS for t in tokens) and not any(f.name == "help" for f in spec.flags)


def _unknown_message(tokens: list[str], registry: CommandRegistry,
                     usable: Callable[[CommandSpec], bool] | None) -> str:
    typed = " ".join(tokens[:2]).lower()
    specs = [spec for spec in registry if usable is None or usable(spec)]
    names = [spec.name for spec in specs]
    group = tokens[0].lower() if tokens else ""
    if group in {spec.group for spec in specs}:
        # the group is right, the rest is not: its own commands, closest first (a command of another
        # group that happens to share letters, like "vm create" for "ip alocate", helps nobody)
        in_group = [n for n in names if n == group or n.startswith(group + " ")]
        close = difflib.get_close_matches(typed, in_group, n=3, cutoff=0.3) or in_group[:6]
    else:
        close = difflib.get_close_matches(typed, names, n=3, cutoff=0.5)
        if not close:
            close = difflib.get_close_matches(group, names, n=3, cutoff=0.5)
    shown = typed[:40]
    if close:
        return f"unknown command '{shown}'. Did you mean: {', '.join(close)}?"
    return f"unknown command '{shown}'. Type 'help' for the list."


_ON, _OFF = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _switch(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _ON | _OFF:
        return value in _ON
    raise InvalidArguments(f"--{name} is a switch: give it alone, or --{name}=yes / --{name}=no")


def _bind(spec: CommandSpec, tokens: list[str]) -> Args:
    flags = {f.name: f for f in spec.flags}
    values: dict[str, object] = {}
    positional: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("--") and len(token) > 2:
            name, eq, inline = token[2:].partition("=")
            flag = flags.get(name)
            if flag is None:
                known = ", ".join(f"--{f}" for f in flags) or "none"
                raise InvalidArguments(f"unknown option --{name[:30]} (options: {known}). Usage: {spec.usage}")
            if flag.kind is bool:
                values[name] = _switch(name, inline) if eq else True
            else:
                if eq:
                    raw = inline
                elif i + 1 < len(tokens):
                    i += 1
                    raw = tokens[i]
                else:
                    raise InvalidArguments(f"--{name} needs a value. Usage: {spec.usage}")
                values[name] = convert(flag, raw)
        else:
            positional.append(token)
        i += 1
    params = spec.positionals
    for index, param in enumerate(params):
        if param.rest:
            rest = positional[index:]
            positional = positional[:index]
            if rest:
                values[param.name] = " ".join(rest)
            break
        if index < len(positional):
            values[param.name] = convert(param, positional[index])
    if len(positional) > len(params):
        raise InvalidArguments(f"too many arguments. Usage: {spec.usage}")
    missing = [p.name for p in params if p.required and values.get(p.name) is None]
    if missing:
        raise InvalidArguments(f"missing {', '.join(missing)}. Usage: {spec.usage}")
    return Args(values=values)
