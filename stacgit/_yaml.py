"""YAML loading with line numbers, so config errors can name ``file:line``.

Only ``yaml.SafeLoader`` is used: no Python object tags, no code execution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stacgit.errors import ConfigError

KeyPath = tuple[Any, ...]


class Located:
    """A parsed YAML document plus the line of every key path in it."""

    def __init__(self, path: Path, data: Any, lines: dict[KeyPath, int]):
        self.path = path
        self.data = data
        self.lines = lines

    def line(self, keypath: KeyPath) -> int | None:
        """Line of the nearest enclosing key path that has one."""
        kp = tuple(keypath)
        while kp:
            if kp in self.lines:
                return self.lines[kp]
            kp = kp[:-1]
        return self.lines.get(())

    def where(self, keypath: KeyPath) -> str:
        line = self.line(keypath)
        return f"{self.path}:{line}" if line else str(self.path)


def _walk(node: yaml.Node, prefix: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                kp = prefix + (key_node.value,)
                lines[kp] = key_node.start_mark.line + 1
                _walk(value_node, kp, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            _walk(child, prefix + (i,), lines)


MAX_EXPANDED_NODES = 200_000
"""A YAML document may not stand for more values than this once its aliases are expanded: an
"alias bomb" of a few hundred bytes otherwise expands to gigabytes when it is walked, hashed
or written (our own files are a few thousand values)."""


def _check_nodes(root: yaml.Node, shown: Path) -> None:
    """Refuse duplicate keys (YAML says a mapping's keys are unique; PyYAML keeps the last one
    silently) and documents that expand past ``MAX_EXPANDED_NODES``. Each distinct node is
    visited once, so the check costs what the text does, not what it expands to."""
    size: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack, seen = [root], set()
    while stack:  # distinct nodes, parents before children
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        order.append(node)
        if isinstance(node, yaml.MappingNode):
            keys: dict = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    if k.value in keys:
                        raise ConfigError(f"{shown}:{k.start_mark.line + 1}: duplicate key {k.value!r} (first at line {keys[k.value]})")
                    keys[k.value] = k.start_mark.line + 1
                stack += [k, v]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value
    for node in reversed(order):  # children before parents
        children = [c for kv in node.value for c in kv] if isinstance(node, yaml.MappingNode) else node.value if isinstance(node, yaml.SequenceNode) else []
        size[id(node)] = min(1 + sum(size[id(c)] for c in children), MAX_EXPANDED_NODES + 1)
    if size[id(root)] > MAX_EXPANDED_NODES:
        raise ConfigError(f"{shown}: the document expands to more than {MAX_EXPANDED_NODES:,} values through YAML aliases; refusing it")


def _format_yaml_error(path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"{path}:{mark.line + 1}:{mark.column + 1}: invalid YAML: {problem}"
    return f"{path}: invalid YAML: {problem}"


def load_yaml_documents(path: Path, display: str | None = None) -> list[Located]:
    """Parse every document of a YAML (or JSON) file, with line numbers."""
    shown = Path(display) if display else path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{shown}:{line}: not valid UTF-8 (byte {exc.start})") from exc
    docs: list[Located] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            _check_nodes(node, shown)
            loader = yaml.SafeLoader("")
            data = loader.construct_document(node)
            lines: dict[KeyPath, int] = {}
            _walk(node, (), lines)
            docs.append(Located(shown, data, lines))
    except yaml.YAMLError as exc:
        raise ConfigError(_format_yaml_error(shown, exc)) from exc
    return docs


def load_yaml(path: Path, display: str | None = None) -> Located:
    """Parse a single-document YAML file; an empty file is an error."""
    docs = load_yaml_documents(path, display)
    shown = display or str(path)
    if not docs:
        raise ConfigError(f"{shown}: file is empty")
    if len(docs) > 1:
        raise ConfigError(f"{shown}: expected one YAML document, found {len(docs)}")
    return docs[0]
