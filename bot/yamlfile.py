"""YAML loading that remembers where every value stands, for error messages with line numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigurationError

PathT = tuple[str | int, ...]


class LocatedDocument:
    """A parsed YAML document plus a map from paths inside it to line numbers."""

    def __init__(self, text: str, *, source: str) -> None:
        self.source = source
        self._lines: dict[PathT, int] = {}
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark is not None else "somewhere"
            problem = getattr(e, "problem", None) or "not valid YAML"
            raise ConfigurationError(f"{source}: {where}: {problem}") from None
        if node is not None:
            self._walk(node, ())

    def _walk(self, node: yaml.Node, path: PathT) -> None:
        self._lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                self._lines[(*path, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def locate(self, path: PathT) -> str:
        """"FILE line N" for the nearest known ancestor of ``path``."""
        for cut in range(len(path), -1, -1):
            line = self._lines.get(path[:cut])
            if line is not None:
                return f"{self.source} line {line}"
        return self.source

    @classmethod
    def read(cls, path: Path) -> LocatedDocument:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigurationError(f"cannot read {path}: {e.strerror}") from None
        return cls(text, source=str(path))


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
