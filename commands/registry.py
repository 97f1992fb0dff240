"""The command registry and the ``@command`` decorator.

Each command group module registers its commands into an explicit :class:`CommandRegistry`
(never by scanning attributes). A command declares its arguments; the grammar parses the
typed line into :class:`Args` before the handler runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from core.chat import Answer, ConversationRef, Reply
from core.errors import InvalidArguments
from core.principal import Principal
from core.rbac import Perm, allows
from core.services import catalog
from core.services.deps import Deps


@dataclass(frozen=True)
class Param:
    """A positional argument or a ``--flag``. ``kind`` converts the text (int, str, bool for switches)."""

    name: str
    kind: type = str
    required: bool = True
    help: str = ""
    # a positional that takes the rest of the line ("deny apr-x because it is prod")
    rest: bool = False
    # its value may be a secret typed by mistake (a password for the name of its variable): the
    # audit trail keeps the typed line with that value masked
    secret_prone: bool = False


@dataclass(frozen=True)
class Args:
    values: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.values.get(name)

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value


@dataclass(frozen=True)
class CommandContext:
    """What a handler gets besides its arguments."""

    principal: Principal
    deps: Deps
    conversation: ConversationRef
    request_id: str
    registry: CommandRegistry
    # the command being run ("vm stop"), for handlers that serve several
    command: str = ""

    def may_use(self, name: str) -> bool:
        """Whether the caller's role allows command ``name``: a reply points only at what the caller can do."""
        spec = self.registry.get(name)
        return spec is not None and spec.visible_to(self.principal)


# a bare Reply, or an Answer when the reply announces work to start once it is posted
Handler = Callable[[Args, CommandContext], Reply | Answer]


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Handler
    summary: str
    usage: str
    permission: Perm | None
    positionals: tuple[Param, ...] = ()
    flags: tuple[Param, ...] = ()
    # the catalog operation it requests, if any: its permission, help line and approval hint come from there
    operation: str | None = None

    @property
    def group(self) -> str:
        return self.name.split(" ", 1)[0]

    def visible_to(self, principal: Principal) -> bool:
        return self.permission is None or allows(principal.role, self.permission)


@dataclass
class CommandRegistry:
    _commands: dict[str, CommandSpec] = field(default_factory=dict)
    widest: int = 1  # words in the longest command name: where parsing starts looking
    # the flags any command marks secret-prone, gathered as they register (every command's audit asks)
    secret_prone_flags: frozenset[str] = frozenset()

    def command(
        self,
        name: str,
        *,
        permission: Perm | None = None,
        operation: str | None = None,
        args: tuple[Param, ...] = (),
        flags: tuple[Param, ...] = (),
        usage: str | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register a handler; its help line is its operation's summary, else its docstring's first line."""
        op = catalog.get(operation) if operation is not None else None

        def register(handler: Handler) -> Handler:
            if name in self._commands:
                raise ValueError(f"command {name!r} registered twice")
            doc = (handler.__doc__ or "").strip().splitlines()
            summary = op.summary if op is not None else (doc[0].strip() if doc else "")
            if not summary:
                raise ValueError(f"command {name!r} has no help text")
            self.widest = max(self.widest, len(name.split(" ")))
            self.secret_prone_flags |= {f.name for f in flags if f.secret_prone}
            self._commands[name] = CommandSpec(
                name=name,
                handler=handler,
                summary=summary,
                usage=usage or _usage(name, args, flags),
                permission=op.perm if op is not None else permission,
                positionals=args,
                flags=flags,
                operation=operation,
            )
            return handler

        return register

    def get(self, name: str) -> CommandSpec | None:
        return self._commands.get(name)

    def __iter__(self) -> Iterator[CommandSpec]:
        return iter(sorted(self._commands.values(), key=lambda c: c.name))

    def __len__(self) -> int:
        return len(self._commands)

    @property
    def names(self) -> list[str]:
        return sorted(self._commands)

    @property
    def groups(self) -> list[str]:
        return sorted({c.group for c in self._commands.values()})


def _usage(name: str, args: tuple[Param, ...], flags: tuple[Param, ...]) -> str:
    parts = [name]
    for a in args:
        label = f"<{a.name}>" + ("…" if a.rest else "")
        parts.append(label if a.required else f"[{label}]")
    for f in flags:
        parts.append(f"[--{f.name}]" if f.kind is bool else f"[--{f.name} {f.name.upper()}]")
    return " ".join(parts)


def convert(param: Param, raw: str) -> Any:
    if param.kind is int:
        try:
            return int(raw)
        except ValueError:
            raise InvalidArguments(f"{param.name} must be a whole number, got '{raw[:30]}'") from None
    return raw
