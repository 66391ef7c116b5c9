"""Which fields of a source record a mapping reads, and whether the source has them.

A mapping names record fields with JMESPath. For sources whose records all share one set of
columns (a CSV header, a Parquet schema) a path whose first field is not a column can only
give nothing: a typo, or a column the source lost. Either would quietly empty the field on
every item (or fail every record), so it is refused when the build reads the source.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

import jmespath

from stacgit.errors import ConfigError

_LEFT_ONLY = {"subexpression", "index_expression", "projection", "value_projection", "filter_projection", "flatten", "pipe"}
"""Node types whose first child is evaluated against the current value and the rest against
what it gives (so only the first can name a field of the record)."""


def root_fields(expr: str) -> set[str]:
    """Fields of the record (the current value at the top) that ``expr`` reads."""
    try:
        ast = jmespath.compile(expr).parsed
    except jmespath.exceptions.JMESPathError:
        return set()
    out: set[str] = set()
    _walk(ast, out)
    return out


def _walk(node: Any, out: set[str]) -> None:
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    children = node.get("children") or []
    if kind == "field":
        out.add(node["value"])
    elif kind in _LEFT_ONLY:
        if children:
            _walk(children[0], out)
    elif kind in ("expref", "literal", "current", "identity"):
        return
    else:  # functions, comparisons, and/or/not, multi-selects: each child sees the record
        for child in children:
            _walk(child, out)


def check_columns(fields: Iterable[tuple[str, str]], columns: list[str], source: str) -> None:
    """Raise a ConfigError for the first mapped field (``(field, where)``) that ``columns``
    (of the source file ``source``) does not have, with a "did you mean"."""
    have = set(columns)
    for name, where in fields:
        if name in have:
            continue
        close = difflib.get_close_matches(name, columns, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (it has: {', '.join(columns[:12])}{', ...' if len(columns) > 12 else ''})"
        raise ConfigError(f"{where}: {source} has no column '{name}'{hint}")
