"""Value specs: where a field's value comes from (``path``, ``value``, ``template``,
``coalesce``) and the transforms applied to it. ``TRANSFORMS`` is the one table of transforms:
``compile_value`` builds a field's steps from it, and ``spec_type`` (GeoParquet column types)
reads the type each step gives from it, so a new transform cannot be rendered one way and typed
another."""

from __future__ import annotations

import math
import re
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable

import jmespath
import orjson

from stacgit import _spec as S
from stacgit._record_fields import root_fields
from stacgit._yaml import KeyPath, Located
from stacgit.columns import value_type
from stacgit.errors import ConfigError, MappingError
from stacgit.mapping.datetimes import bad_directive, format_datetime, parse_datetime, tzinfo

OMIT = object()
"""Sentinel: an optional value that is missing; the field is left out of the item."""

Getter = Callable[[dict, dict], Any]

_SIMPLE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
TYPES = ("str", "int", "float", "bool", "datetime", "date")
SOURCE_KEYS = ("path", "value", "template", "coalesce")
VALUE_FIELDS: dict[str, S.Node] = {
    "path": S.STR,
    "value": S.ANY,
    "template": S.STR,
    "coalesce": S.Node("list"),
    "json": S.BOOL,
    "regex": S.STR,
    "group": S.Node(("int", "str")),
    "split": S.STR,
    "lookup": S.Node("map"),
    "lookup_default": S.ANY,
    "join": S.STR,
    "type": S.Node("str", choices=TYPES),
    "scale": S.NUMBER,
    "offset": S.NUMBER,
    "format": S.Node(("str", "list")),
    "tz": S.STR,
    "optional": S.BOOL,
    "default": S.ANY,
}
VALUE_NODE = S.obj(VALUE_FIELDS)


# --------------------------------------------------------------------------- conversions


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    if text in ("true", "yes", "y", "1", "t"):
        return True
    if text in ("false", "no", "n", "0", "f"):
        return False
    raise ValueError(f"cannot convert {v!r} to bool")


def _to_int(v: Any) -> int:
    if isinstance(v, bool):
        raise ValueError(f"cannot convert {v!r} to int")
    if isinstance(v, float):
        if not v.is_integer():
            raise ValueError(f"{v!r} is not a whole number")
        return int(v)
    try:
        return int(str(v).strip())
    except ValueError:
        raise ValueError(f"cannot convert {v!r} to int") from None


def to_float(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError(f"cannot convert {v!r} to float")
    try:
        f = float(v if isinstance(v, (int, float)) else str(v).strip())
    except ValueError:
        raise ValueError(f"cannot convert {v!r} to float") from None
    if not math.isfinite(f):
        raise ValueError(f"{v!r} is not a finite number")
    return f


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "str": lambda v: v if isinstance(v, str) else (str(v) if not isinstance(v, (dict, list)) else orjson.dumps(v).decode()),
    "int": _to_int,
    "float": to_float,
    "bool": _to_bool,
}


# --------------------------------------------------------------------------- sources


READS: ContextVar[list[tuple[str, str]] | None] = ContextVar("READS", default=None)
"""While :func:`compile_mapping` runs: the (record field, where) pairs its paths read, so the
build can check them against a source's columns (set and reset there only)."""


def compile_path(expr: str, where: str) -> Callable[[Any], Any]:
    reads = READS.get()
    if reads is not None:
        reads.extend((f, where) for f in sorted(root_fields(expr)))
    if _SIMPLE_PATH.match(expr):
        keys = expr.split(".")
        if len(keys) == 1:
            key = keys[0]
            return lambda rec: rec.get(key) if isinstance(rec, dict) else None

        def get(rec: Any) -> Any:
            for k in keys:
                if not isinstance(rec, dict):
                    return None
                rec = rec.get(k)
            return rec

        return get
    try:
        compiled = jmespath.compile(expr)
    except jmespath.exceptions.JMESPathError as exc:
        raise ConfigError(f"{where}: invalid JMESPath {expr!r}: {exc}") from exc
    return compiled.search


_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")


def compile_template(text: str, where: str) -> Callable[[dict, dict], str]:
    """'s3://b/{flight_line}.zarr' -> function(record, ctx). {$id}, {$collection} from ctx."""
    parts: list[str | tuple[str, Callable[[Any], Any] | None]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append(text[pos : m.start()])
        token = m.group(0)
        if token in ("{{", "}}"):
            parts.append(token[0])
        else:
            expr = m.group(1).strip()
            if not expr:
                raise ConfigError(f"{where}: empty placeholder '{{}}' in template {text!r}")
            if expr.startswith("$"):
                if expr not in ("$id", "$collection"):
                    raise ConfigError(
                        f"{where}: unknown variable {expr!r} in template (use $id or $collection)"
                    )
                parts.append((expr, None))
            else:
                parts.append((expr, compile_path(expr, where)))
        pos = m.end()
    parts.append(text[pos:])
    if "{" in text.replace("{{", "").replace("}}", "") and not any(isinstance(p, tuple) for p in parts):
        raise ConfigError(f"{where}: unbalanced braces in template {text!r}")

    def render(rec: dict, ctx: dict) -> str:
        out = []
        for p in parts:
            if isinstance(p, str):
                out.append(p)
                continue
            name, getter = p
            val = ctx.get(name) if getter is None else getter(rec)
            if val is None or val == "":
                raise Missing(name)
            out.append(val if isinstance(val, str) else _CONVERT["str"](val))
        return "".join(out)

    return render


class Missing(Exception):
    def __init__(self, what: str):
        self.what = what


def _parse_json(v: Any) -> Any:
    """The ``json`` transform: JSON text in a field (a CSV column holding ``"[-74.5, 43.7, ...]"``)
    becomes its value; a value that is already structured (from a JSON source) is kept."""
    if not isinstance(v, (str, bytes)):
        return v
    try:
        return orjson.loads(v)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{v!r:.60} is not JSON text ({exc})") from None


# --------------------------------------------------------------------------- the transforms

Kind = tuple[str, bool]
"""A value's column type while its steps run: (scalar type, is it a list of them)."""
_MAPPING_TYPES = {"str": "string", "int": "int64", "float": "float64", "bool": "bool", "datetime": "datetime", "date": "string"}


def _regex(doc: Located, spec: dict, kp: KeyPath) -> Callable[[Any], Any]:
    try:
        rx = re.compile(spec["regex"])
    except re.error as exc:
        raise S.fail(doc, kp + ("regex",), f"invalid regular expression: {exc}") from exc
    group: int | str = spec.get("group", "value" if "value" in rx.groupindex else (1 if rx.groups else 0))
    if isinstance(group, int) and group > rx.groups:
        raise S.fail(doc, kp + ("group",), f"regex has only {rx.groups} group(s)")
    if isinstance(group, str) and group not in rx.groupindex:
        raise S.fail(doc, kp + ("group",), f"regex has no group named {group!r}")

    def do_regex(v: Any) -> Any:
        m = rx.search(v if isinstance(v, str) else str(v))
        if m is None:
            raise ValueError(f"{v!r} does not match regex {rx.pattern!r}")
        return m.group(group)

    return do_regex


def _split(doc: Located, spec: dict, kp: KeyPath) -> Callable[[Any], Any]:
    sep = spec["split"]
    return lambda v: [s.strip() for s in str(v).split(sep)] if v != "" else []


def _lookup(doc: Located, spec: dict, kp: KeyPath) -> Callable[[Any], Any]:
    table = {str(k): val for k, val in spec["lookup"].items()}
    has_default = "lookup_default" in spec
    fallback = spec.get("lookup_default")

    def lookup_one(v: Any) -> Any:
        key = v if isinstance(v, str) else str(v)
        if key in table:
            return table[key]
        if has_default:
            return fallback
        raise ValueError(f"{v!r} is not in the lookup table")

    return lambda v: [lookup_one(x) for x in v] if isinstance(v, list) else lookup_one(v)


def _join(doc: Located, spec: dict, kp: KeyPath) -> Callable[[Any], Any]:
    jsep = spec["join"]
    return lambda v: jsep.join(map(str, v)) if isinstance(v, list) else v


def _declared(spec: dict) -> str:
    return spec.get("type") or "datetime"  # format/tz without a type: a datetime


def _convert(doc: Located, spec: dict, kp: KeyPath) -> Callable[[Any], Any]:
    vtype = _declared(spec)
    if "format" in spec or "tz" in spec:
        if vtype not in ("datetime", "date"):
            raise S.fail(doc, kp, "'format'/'tz' need type datetime or date")
    if vtype in ("datetime", "date"):
        fmts = spec.get("format", ())
        fmts = (fmts,) if isinstance(fmts, str) else tuple(fmts)
        if not all(isinstance(f, str) for f in fmts):
            raise S.fail(doc, kp + ("format",), "must be a string or a list of strings")
        for f in fmts:
            bad = bad_directive(f)
            if bad:
                raise S.fail(doc, kp + ("format",), f"{f!r}: {bad}")
        tz = tzinfo(spec["tz"], doc.where(kp + ("tz",))) if "tz" in spec else None
        as_date = vtype == "date"

        def conv(v: Any) -> Any:
            dt = parse_datetime(v, fmts, tz if not as_date else (tz or timezone.utc))
            return dt.date().isoformat() if as_date else format_datetime(dt)
    else:
        conv = _CONVERT[vtype]
    return lambda v: [conv(x) for x in v] if isinstance(v, list) else conv(v)


def _affine(doc: Located, spec: dict, kp: KeyPath) -> Callable[[Any], Any]:
    scale, offset = spec.get("scale", 1), spec.get("offset", 0)

    def affine(v: Any) -> Any:
        if isinstance(v, list):
            return [affine(x) for x in v]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            v = to_float(v)
        return v * scale + offset

    return affine


def _lookup_kind(spec: dict, kind: Kind) -> Kind:
    kinds = {value_type(v) for v in spec["lookup"].values()} | ({value_type(spec["lookup_default"])} if "lookup_default" in spec else set())
    return (kinds.pop() if len(kinds) == 1 else "json", kind[1])


def _affine_kind(spec: dict, kind: Kind) -> Kind:
    ints = all(isinstance(spec.get(k, 0), int) and not isinstance(spec.get(k, 0), bool) for k in ("scale", "offset"))
    return ("int64" if kind[0] == "int64" and ints else "float64", kind[1])


@dataclass(frozen=True)
class Transform:
    """One step of a value spec: on when any of ``keys`` is in the spec (the first is its name),
    ``compile`` builds the step, ``kind`` says the column type the step gives."""

    keys: tuple[str, ...]
    compile: Callable[[Located, dict, KeyPath], Callable[[Any], Any]]
    kind: Callable[[dict, Kind], Kind]

    def on(self, spec: dict) -> bool:
        return any(k in spec and spec[k] is not False for k in self.keys)


TRANSFORMS = (
    Transform(("json",), lambda doc, spec, kp: _parse_json, lambda spec, kind: ("json", False)),
    Transform(("regex", "group"), _regex, lambda spec, kind: ("string", False)),
    Transform(("split",), _split, lambda spec, kind: ("string", True)),
    Transform(("lookup", "lookup_default"), _lookup, _lookup_kind),
    Transform(("join",), _join, lambda spec, kind: ("string", False)),
    Transform(("type", "format", "tz"), _convert, lambda spec, kind: (_MAPPING_TYPES[_declared(spec)], kind[1])),
    Transform(("scale", "offset"), _affine, _affine_kind),
)
"""Every transform, in the order its steps run."""


def _kind_of(value_kind: str) -> Kind:
    return (value_kind[5:-1], True) if value_kind.startswith("list<") else (value_kind, False)


def spec_type(spec: Any) -> str:
    """The column type of a value spec: its source's, then each of its transforms' in turn."""
    if not isinstance(spec, dict):
        return value_type(spec)
    if "value" in spec:
        kind = _kind_of(value_type(spec["value"]))
    elif "coalesce" in spec:
        kinds = {spec_type(s) for s in spec["coalesce"]}
        kind = _kind_of(kinds.pop()) if len(kinds) == 1 else ("json", False)
    else:  # a path or a template: text, unless a step says otherwise
        kind = ("string", False)
    for t in TRANSFORMS:
        if t.on(spec):
            kind = t.kind(spec, kind)
    scalar, is_list = kind
    if is_list:
        return f"list<{scalar}>" if scalar in ("string", "int64", "float64") else "json"
    return scalar


def compile_value(doc: Located, spec: Any, kp: KeyPath, force_type: str | None = None) -> Getter:
    """Turn a value spec into ``get(record, ctx) -> value | OMIT`` (raises MappingError)."""
    field = S.keypath_str(kp)
    where = doc.where(kp)
    if not isinstance(spec, dict):
        hint = (
            f" (write {{path: {spec}}} for a record field or {{value: {spec}}} for a constant)"
            if isinstance(spec, str)
            else f" (write {{value: {spec!r}}} for a constant)"
        )
        raise S.fail(doc, kp, f"must be a value spec mapping{hint}")
    S.check(doc, VALUE_NODE, spec, kp)
    sources = [k for k in SOURCE_KEYS if k in spec]
    if len(sources) != 1:
        raise S.fail(doc, kp, f"needs exactly one of {', '.join(SOURCE_KEYS)}")
    if force_type and spec.get("type", force_type) != force_type:
        raise S.fail(doc, kp + ("type",), f"must be {force_type} for this field")
    if force_type and "type" not in spec:
        spec = {**spec, "type": force_type}
    base, label = _source(doc, spec, kp, where)
    steps = [t.compile(doc, spec, kp) for t in TRANSFORMS if t.on(spec)]
    optional = spec.get("optional", False)
    has_default = "default" in spec
    default = spec.get("default")

    def get(rec: dict, ctx: dict) -> Any:
        v = base(rec, ctx)
        if v is None or v == "":
            if has_default:
                return default
            if optional:
                return OMIT
            raise MappingError(field, f"no value ({label})")
        try:
            for step in steps:
                v = step(v)
        except (ValueError, TypeError, OverflowError) as exc:
            raise MappingError(field, str(exc)) from None
        return v

    return get


def _source(doc: Located, spec: dict, kp: KeyPath, where: str) -> tuple[Getter, str]:
    """The getter of a spec's source key, and how a missing value is named."""
    if "path" in spec:
        path_get = compile_path(spec["path"], where)
        return (lambda rec, ctx: path_get(rec)), f"path {spec['path']!r}"
    if "value" in spec:
        const = spec["value"]
        return (lambda rec, ctx: const), "value"
    if "template" in spec:
        tpl = compile_template(spec["template"], where)

        def from_template(rec: dict, ctx: dict) -> Any:
            try:
                return tpl(rec, ctx)
            except Missing:
                return None

        return from_template, f"template {spec['template']!r}"
    subs = [compile_value(doc, s, kp + ("coalesce", i)) for i, s in enumerate(spec["coalesce"])]

    def first(rec: dict, ctx: dict) -> Any:
        for sub in subs:
            try:
                v = sub(rec, ctx)
            except MappingError:
                continue
            if v is not OMIT and v is not None:
                return v
        return None

    return first, "coalesce"
