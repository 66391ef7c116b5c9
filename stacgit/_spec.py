"""A small declarative checker for YAML configs: unknown keys (with "did you mean"),
missing required keys and wrong types, each reported as ``file:line: key.path: message``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from stacgit._yaml import KeyPath, Located
from stacgit.errors import ConfigError

_TYPE_NAMES = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "bool": "true or false",
    "list": "a list",
    "map": "a mapping",
    "obj": "a mapping",
    "any": "any value",
}


@dataclass(frozen=True)
class Node:
    """Schema of one value. ``kind`` is one of _TYPE_NAMES or a tuple of them (a union)."""

    kind: str | tuple[str, ...]
    fields: dict[str, "Node"] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    item: "Node | None" = None
    values: "Node | None" = None
    choices: tuple[Any, ...] = ()


def obj(fields: dict[str, Node], required: tuple[str, ...] = ()) -> Node:
    return Node("obj", fields=fields, required=required)


def lst(item: Node) -> Node:
    return Node("list", item=item)


def mapping(values: Node) -> Node:
    return Node("map", values=values)


STR = Node("str")
INT = Node("int")
NUMBER = Node("number")
BOOL = Node("bool")
ANY = Node("any")


def keypath_str(kp: KeyPath) -> str:
    out = ""
    for part in kp:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _matches(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list)
    return isinstance(value, dict)


def fail(doc: Located, kp: KeyPath, message: str) -> ConfigError:
    return ConfigError(f"{doc.where(kp)}: {keypath_str(kp)}: {message}")


def check(doc: Located, node: Node, value: Any = None, kp: KeyPath = ()) -> None:
    """Raise ConfigError for the first problem found in ``value`` (default: the whole doc)."""
    if not kp and value is None:
        value = doc.data
    kinds = node.kind if isinstance(node.kind, tuple) else (node.kind,)
    matched = next((k for k in kinds if _matches(k, value)), None)
    if matched is None:
        want = " or ".join(_TYPE_NAMES[k] for k in kinds)
        raise fail(doc, kp, f"must be {want}, got {type(value).__name__} {value!r:.60}")
    if node.choices and value not in node.choices:
        opts = ", ".join(map(str, node.choices))
        hint = did_you_mean(str(value), [str(c) for c in node.choices])
        raise fail(doc, kp, f"must be one of {opts}, got {value!r}{hint}")
    if matched == "obj":
        for key in value:
            if key not in node.fields:
                hint = did_you_mean(str(key), list(node.fields))
                raise fail(doc, kp + (key,), f"unknown key{hint}")
        for key in node.required:
            if key not in value:
                raise fail(doc, kp, f"missing required key '{key}'")
        for key, sub in value.items():
            check(doc, node.fields[key], sub, kp + (key,))
    elif matched == "map" and node.values is not None:
        for key, sub in value.items():
            if not isinstance(key, str):
                raise fail(doc, kp + (key,), "keys must be strings")
            check(doc, node.values, sub, kp + (key,))
    elif matched == "list" and node.item is not None:
        for i, sub in enumerate(value):
            check(doc, node.item, sub, kp + (i,))
