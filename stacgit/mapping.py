"""Declarative record -> STAC Item mappings. Pure: no I/O besides loading the spec, no eval.

A mapping file (``mappings/<name>.yaml``) says how each field of an Item is computed from a
source record. Values are *value specs*: mappings with exactly one source key

    path: JMESPath expression        value: constant
    template: 'text {expr} text'     coalesce: [spec, spec, ...]

followed by optional transforms, applied in this fixed order:

    regex (+ group) -> split -> lookup (+ lookup_default) -> join -> type -> scale/offset
    -> datetime parsing (format, tz)

and ``optional: true`` / ``default: <value>`` for missing values. See README.md for the full
reference; every key here is checked at load time and unknown keys are errors.
"""

from __future__ import annotations

import math
import re
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jmespath
import orjson

from stacgit.stac import API_RELS, STAC_VERSION, STRUCTURAL_RELS
from stacgit import _spec as S
from stacgit._record_fields import root_fields
from stacgit._yaml import KeyPath, Located, load_yaml
from stacgit.errors import ConfigError, MappingError
from stacgit.geo import coords_bbox, geometry_problem
from stacgit.hashing import digest_obj


OMIT = object()
"""Sentinel: an optional value that is missing; the field is left out of the item."""

Getter = Callable[[dict, dict], Any]

_SIMPLE_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_TYPES = ("str", "int", "float", "bool", "datetime", "date")

_SOURCE_KEYS = ("path", "value", "template", "coalesce")
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
    "type": S.Node("str", choices=_TYPES),
    "scale": S.NUMBER,
    "offset": S.NUMBER,
    "format": S.Node(("str", "list")),
    "tz": S.STR,
    "optional": S.BOOL,
    "default": S.ANY,
}
VALUE_NODE = S.obj(VALUE_FIELDS)

_GEOM_KINDS = ("bbox", "point", "wkt", "wkb", "geojson")
GEOMETRY_NODE = S.obj({k: S.ANY for k in _GEOM_KINDS} | {"optional": S.BOOL})
ASSET_NODE = S.obj(
    {
        "href": S.STR,
        "type": S.STR,
        "roles": S.lst(S.STR),
        "title": S.STR,
        "description": S.STR,
        "fields": S.mapping(S.ANY),
        "optional": S.BOOL,
    },
    required=("href",),
)
LINK_NODE = S.obj(
    {"rel": S.STR, "href": S.STR, "type": S.STR, "title": S.STR}, required=("rel", "href")
)
MAPPING_NODE = S.obj(
    {
        "id": S.ANY,
        "datetime": S.ANY,
        "start_datetime": S.ANY,
        "end_datetime": S.ANY,
        "geometry": GEOMETRY_NODE,
        "bbox": S.ANY,
        "properties": S.mapping(S.ANY),
        "defaults": S.mapping(S.ANY),
        "assets": S.mapping(ASSET_NODE),
        "links": S.lst(LINK_NODE),
        "stac_extensions": S.lst(S.STR),
    },
    required=("id", "geometry"),
)

# --------------------------------------------------------------------------- datetimes


def format_datetime(dt: datetime) -> str:
    """RFC 3339 in UTC with 'Z'; fractional seconds only when present, trailing zeros trimmed."""
    dt = dt.astimezone(timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += ("." + f"{dt.microsecond:06d}").rstrip("0")
    return text + "Z"


def sortable_datetime(text: str) -> str:
    """Fixed-width form of a canonical datetime (always 6 fraction digits): sorts as text."""
    if "." in text:
        head, frac = text[:-1].split(".")
        return f"{head}.{frac:0<6}Z"
    return text[:-1] + ".000000Z"


def parse_rfc3339(text: str, default_tz=None) -> datetime:
    """An ISO 8601 / RFC 3339 date-time as an aware UTC datetime. A time without zone gets
    ``default_tz``, or is a ValueError (never silently UTC)."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        if default_tz is None:
            raise ValueError(f"{text!r} has no time zone")
        dt = dt.replace(tzinfo=default_tz)
    return dt.astimezone(timezone.utc)


def _parse_datetime(value: Any, formats: tuple[str, ...], tz: ZoneInfo | None) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and formats in (
        ("epoch",),
        ("epoch_ms",),
    ):
        seconds = value / 1000 if formats == ("epoch_ms",) else value
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    else:
        text = str(value).strip()
        dt = None
        if formats and formats not in (("epoch",), ("epoch_ms",)):
            for fmt in formats:
                try:
                    dt = datetime.strptime(text, fmt)
                    break
                except ValueError:
                    continue
            if dt is None:
                raise ValueError(f"{text!r} does not match format {' or '.join(formats)}")
        elif formats:
            try:
                number = float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a number of seconds since the epoch") from None
            return _parse_datetime(number, formats, tz)
        else:
            try:
                dt = datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{text!r} is not an ISO 8601 date/time (set 'format')") from None
    if dt.tzinfo is None:
        if tz is None:
            raise ValueError(f"{value!s} has no time zone (set 'tz', e.g. tz: UTC)")
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(timezone.utc)


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


def _to_float(v: Any) -> float:
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
    "float": _to_float,
    "bool": _to_bool,
}


# --------------------------------------------------------------------------- compiled specs


_STRPTIME = set("aAwdbBmyYHIpMSfzZjUWcxXGuV%")
_DIRECTIVE = re.compile(r"%(.?)")


def _bad_directive(fmt: str) -> str | None:
    """Why ``fmt`` cannot be a ``strptime`` format (checked when the mapping loads, not on the
    first record), or None."""
    if fmt in ("epoch", "epoch_ms"):
        return None
    found = _DIRECTIVE.findall(fmt)
    if not found:
        return "has no % directive (write e.g. '%Y-%m-%d', or epoch, epoch_ms)"
    for d in found:
        if d not in _STRPTIME:
            return f"'%{d}' is not a strptime directive" if d else "ends with a lone '%'"
    return None


_READS: ContextVar[list[tuple[str, str]] | None] = ContextVar("_READS", default=None)
"""While :func:`compile_mapping` runs: the (record field, where) pairs its paths read, so the
build can check them against a source's columns (set and reset there only)."""


def _compile_path(expr: str, where: str) -> Callable[[Any], Any]:
    reads = _READS.get()
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


def _compile_template(text: str, where: str) -> Callable[[dict, dict], str]:
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
                parts.append((expr, _compile_path(expr, where)))
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
                raise _Missing(name)
            out.append(val if isinstance(val, str) else _CONVERT["str"](val))
        return "".join(out)

    return render


class _Missing(Exception):
    def __init__(self, what: str):
        self.what = what


def _tzinfo(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: unknown time zone {name!r}") from exc


def _parse_json(v: Any) -> Any:
    """The ``json`` transform: JSON text in a field (a CSV column holding ``"[-74.5, 43.7, ...]"``)
    becomes its value; a value that is already structured (from a JSON source) is kept."""
    if not isinstance(v, (str, bytes)):
        return v
    try:
        return orjson.loads(v)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{v!r:.60} is not JSON text ({exc})") from None


def compile_value(
    doc: Located, spec: Any, kp: KeyPath, force_type: str | None = None
) -> Getter:
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
    sources = [k for k in _SOURCE_KEYS if k in spec]
    if len(sources) != 1:
        raise S.fail(doc, kp, f"needs exactly one of {', '.join(_SOURCE_KEYS)}")
    source = sources[0]

    if source == "path":
        path_get = _compile_path(spec["path"], where)
        label = f"path {spec['path']!r}"

        def base(rec: dict, ctx: dict) -> Any:
            return path_get(rec)
    elif source == "value":
        const = spec["value"]
        label = "value"

        def base(rec: dict, ctx: dict) -> Any:
            return const
    elif source == "template":
        tpl = _compile_template(spec["template"], where)
        label = f"template {spec['template']!r}"

        def base(rec: dict, ctx: dict) -> Any:
            try:
                return tpl(rec, ctx)
            except _Missing:
                return None
    else:
        subs = [
            compile_value(doc, s, kp + ("coalesce", i)) for i, s in enumerate(spec["coalesce"])
        ]
        label = "coalesce"

        def base(rec: dict, ctx: dict) -> Any:
            for sub in subs:
                try:
                    v = sub(rec, ctx)
                except MappingError:
                    continue
                if v is not OMIT and v is not None:
                    return v
            return None

    steps: list[Callable[[Any], Any]] = []
    if spec.get("json"):
        steps.append(_parse_json)
    if "regex" in spec:
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

        steps.append(do_regex)
    if "split" in spec:
        sep = spec["split"]
        steps.append(lambda v: [s.strip() for s in str(v).split(sep)] if v != "" else [])
    if "lookup" in spec:
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

        steps.append(lambda v: [lookup_one(x) for x in v] if isinstance(v, list) else lookup_one(v))
    if "join" in spec:
        jsep = spec["join"]
        steps.append(lambda v: jsep.join(map(str, v)) if isinstance(v, list) else v)
    vtype = spec.get("type", force_type)
    if force_type and vtype not in (force_type, None):
        raise S.fail(doc, kp + ("type",), f"must be {force_type} for this field")
    if "format" in spec or "tz" in spec:
        vtype = vtype or "datetime"
        if vtype not in ("datetime", "date"):
            raise S.fail(doc, kp, "'format'/'tz' need type datetime or date")
    if vtype in ("datetime", "date"):
        fmts = spec.get("format", ())
        fmts = (fmts,) if isinstance(fmts, str) else tuple(fmts)
        if not all(isinstance(f, str) for f in fmts):
            raise S.fail(doc, kp + ("format",), "must be a string or a list of strings")
        for f in fmts:
            bad = _bad_directive(f)
            if bad:
                raise S.fail(doc, kp + ("format",), f"{f!r}: {bad}")
        tz = _tzinfo(spec["tz"], doc.where(kp + ("tz",))) if "tz" in spec else None
        as_date = vtype == "date"

        def conv(v: Any) -> Any:
            dt = _parse_datetime(v, fmts, tz if not as_date else (tz or timezone.utc))
            return dt.date().isoformat() if as_date else format_datetime(dt)
    elif vtype:
        conv = _CONVERT[vtype]
    else:
        conv = None
    if conv is not None:
        steps.append(lambda v, c=conv: [c(x) for x in v] if isinstance(v, list) else c(v))
    if "scale" in spec or "offset" in spec:
        scale, offset = spec.get("scale", 1), spec.get("offset", 0)

        def affine(v: Any) -> Any:
            if isinstance(v, list):
                return [affine(x) for x in v]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                v = _to_float(v)
            return v * scale + offset

        steps.append(affine)

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


# --------------------------------------------------------------------------- geometry


def _check_lonlat(x: float, y: float) -> None:
    if not (-180 <= x <= 180 and -90 <= y <= 90):
        raise ValueError(f"coordinate ({x}, {y}) is outside WGS84 longitude/latitude")


def _bbox_polygon(b: list[float]) -> dict:
    w, s, e, n = b
    _check_lonlat(w, s)
    _check_lonlat(e, n)
    if s > n:
        raise ValueError(f"bbox south {s} is greater than north {n}")
    if w > e:
        raise ValueError(f"bbox west {w} is greater than east {e} (antimeridian bboxes are not supported)")
    return {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}


_GEOJSON_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection")


def _from_shapely(shape: Any) -> dict:
    from shapely.geometry import mapping as shp_mapping

    return orjson.loads(orjson.dumps(shp_mapping(shape)))


def _numbers(doc: Located, spec: Any, kp: KeyPath, n: int) -> Callable[[dict, dict], list[float] | None]:
    """A list of n paths/value specs, or one path or value spec giving a list (or a 'w,s,e,n'
    string)."""
    if isinstance(spec, str) or (isinstance(spec, dict) and any(k in spec for k in _SOURCE_KEYS)):
        one = compile_value(doc, {"path": spec, "optional": True} if isinstance(spec, str) else {"optional": True, **spec}, kp)

        def get_list(rec: dict, ctx: dict) -> list[float] | None:
            v = one(rec, ctx)
            if v is OMIT:
                return None
            if isinstance(v, str):
                v = [x for x in re.split(r"[,\s]+", v.strip()) if x]
            if not isinstance(v, list) or len(v) != n:
                raise MappingError(S.keypath_str(kp), f"expected {n} numbers, got {v!r:.80}")
            return [_to_float(x) for x in v]

        return get_list
    if not isinstance(spec, list) or len(spec) != n:
        raise S.fail(doc, kp, f"must be a path or a list of {n} paths/value specs")
    getters = [
        compile_value(doc, {"path": s, "optional": True} if isinstance(s, str) else s, kp + (i,), None)
        for i, s in enumerate(spec)
    ]

    def get_all(rec: dict, ctx: dict) -> list[float] | None:
        vals = [g(rec, ctx) for g in getters]
        if all(v is OMIT for v in vals):
            return None
        if any(v is OMIT for v in vals):
            raise MappingError(S.keypath_str(kp), "some coordinates are missing")
        try:
            return [_to_float(v) for v in vals]
        except ValueError as exc:
            raise MappingError(S.keypath_str(kp), str(exc)) from None

    return get_all


def compile_geometry(doc: Located, spec: dict, kp: KeyPath) -> Callable[[dict, dict], dict | None]:
    S.check(doc, GEOMETRY_NODE, spec, kp)
    kinds = [k for k in _GEOM_KINDS if k in spec]
    if len(kinds) != 1:
        raise S.fail(doc, kp, f"needs exactly one of {', '.join(_GEOM_KINDS)}")
    kind = kinds[0]
    optional = spec.get("optional", False)
    field = S.keypath_str(kp)
    sub = spec[kind]
    skp = kp + (kind,)

    if kind == "bbox":
        nums = _numbers(doc, sub, skp, 4)

        def build(rec: dict, ctx: dict) -> dict | None:
            b = nums(rec, ctx)
            return None if b is None else _bbox_polygon(b)
    elif kind == "point":
        nums = _numbers(doc, sub, skp, 2)

        def build(rec: dict, ctx: dict) -> dict | None:
            p = nums(rec, ctx)
            if p is None:
                return None
            _check_lonlat(p[0], p[1])
            return {"type": "Point", "coordinates": p}
    else:
        raw = compile_value(doc, {"path": sub, "optional": True} if isinstance(sub, str) else sub, skp)

        def build(rec: dict, ctx: dict) -> dict | None:
            v = raw(rec, ctx)
            if v is OMIT:
                return None
            if kind == "wkt":
                import shapely.wkt
                from shapely.errors import ShapelyError

                try:
                    return _from_shapely(shapely.wkt.loads(str(v)))
                except ShapelyError as exc:
                    raise ValueError(f"invalid WKT: {str(exc).splitlines()[0]}") from None
            if kind == "wkb":
                import shapely.wkb
                from shapely.errors import ShapelyError

                try:
                    return _from_shapely(shapely.wkb.loads(v, hex=isinstance(v, str)))
                except (ShapelyError, ValueError) as exc:
                    raise ValueError(f"invalid WKB: {str(exc).splitlines()[0]}") from None
            g = v
            if isinstance(g, str):
                try:
                    g = orjson.loads(g)
                except orjson.JSONDecodeError:
                    raise ValueError("not a GeoJSON geometry (invalid JSON)") from None
            if isinstance(g, dict) and g.get("type") == "Feature":
                g = g.get("geometry")
            if not isinstance(g, dict) or g.get("type") not in _GEOJSON_TYPES:
                raise ValueError(f"not a GeoJSON geometry: {str(g):.60}")
            if g["type"] != "GeometryCollection" and not isinstance(g.get("coordinates"), list):
                raise ValueError("GeoJSON geometry has no coordinates")
            return g

    def get(rec: dict, ctx: dict) -> dict | None:
        try:
            g = build(rec, ctx)
        except (ValueError, TypeError) as exc:
            raise MappingError(field, str(exc)) from None
        if g is None and not optional:
            raise MappingError(field, f"no value for geometry {kind}")
        return g

    return get


# --------------------------------------------------------------------------- the mapping


@dataclass(frozen=True)
class MappingSpec:
    """A loaded, checked mapping. ``digest`` changes when its meaning changes (not comments)."""

    path: str
    data: dict
    digest: str
    render: Callable[..., dict]
    reads: tuple[tuple[str, str], ...] = ()  # (record field, where in the mapping) of every path


def _passthrough_render(record: dict, collection: str, extra_defaults: dict | None = None) -> dict:
    """A STAC item from a snapshot as it is, re-homed in our collection: ``collection`` set,
    ``stac_version`` 1.1.0, structural links dropped (the build adds its own), defaults filled."""
    item_id = record.get("id")
    if not isinstance(item_id, str):
        raise MappingError("id", "a STAC item needs a string id")
    props = record.get("properties")
    if not isinstance(props, dict):
        raise MappingError("properties", "a STAC item needs a properties object")
    if not props.get("datetime") and not (props.get("start_datetime") and props.get("end_datetime")):
        raise MappingError("properties.datetime", "needs datetime, or start_datetime and end_datetime")
    if "geometry" not in record:
        raise MappingError("geometry", "a STAC item needs a geometry (null is allowed)")
    item = dict(record)
    if item.get("bbox") is None and isinstance(item.get("geometry"), dict):
        why = geometry_problem(item["geometry"])  # the spec requires a bbox with a geometry: computed from it
        if why:
            raise MappingError("geometry", why)
        item["bbox"] = coords_bbox(item["geometry"])
    item["type"] = "Feature"
    item["stac_version"] = "1.1.0"
    item["collection"] = collection
    item.setdefault("stac_extensions", [])
    item.setdefault("assets", {})
    item["links"] = [l for l in record.get("links") or [] if isinstance(l, dict) and l.get("rel") not in STRUCTURAL_RELS | API_RELS]
    if extra_defaults:
        item["properties"] = {**extra_defaults, **props}
    for key in ("datetime", "start_datetime", "end_datetime"):
        value = item["properties"].get(key)
        if isinstance(value, str):
            try:
                item["properties"][key] = format_datetime(_parse_datetime(value, (), None))
            except (ValueError, MappingError) as exc:
                raise MappingError(f"properties.{key}", f"{value!r} is not an RFC 3339 datetime with a time zone") from exc
    return item


PASSTHROUGH = MappingSpec(path="(stac item as snapshotted)", data={}, digest="passthrough-1", render=_passthrough_render)
"""The mapping of a STAC API source without a ``mapping:``: items pass through unchanged."""


def load_mapping(path: Path, display: str | None = None) -> MappingSpec:
    doc = load_yaml(path, display)
    return compile_mapping(doc)


def compile_mapping(doc: Located) -> MappingSpec:
    reads: list[tuple[str, str]] = []
    token = _READS.set(reads)
    try:
        spec = _compile_mapping(doc)
    finally:
        _READS.reset(token)
    return MappingSpec(path=spec.path, data=spec.data, digest=spec.digest, render=spec.render, reads=tuple(dict.fromkeys(reads)))


def _link(href: Callable[[dict, dict], str], rest: dict, record: dict, ctx: dict) -> dict:
    return {"href": href(record, ctx), **rest}


def _compile_mapping(doc: Located) -> MappingSpec:
    data = doc.data
    if not isinstance(data, dict):
        raise S.fail(doc, (), "a mapping file must be a YAML mapping")
    S.check(doc, MAPPING_NODE, data, ())
    if "datetime" not in data and not ("start_datetime" in data and "end_datetime" in data):
        raise S.fail(doc, (), "needs 'datetime', or both 'start_datetime' and 'end_datetime'")
    get_id = compile_value(doc, data["id"], ("id",), "str")
    dt_getters = {
        k: compile_value(doc, data[k], (k,), "datetime")
        for k in ("datetime", "start_datetime", "end_datetime")
        if k in data
    }
    get_geom = compile_geometry(doc, data["geometry"], ("geometry",))
    get_bbox = _numbers(doc, data["bbox"], ("bbox",), 4) if "bbox" in data else None
    props = {
        name: compile_value(doc, spec, ("properties", name))
        for name, spec in (data.get("properties") or {}).items()
    }
    for reserved in ("datetime", "start_datetime", "end_datetime"):
        if reserved in props:
            raise S.fail(doc, ("properties", reserved), f"set '{reserved}' at the top level of the mapping")
    defaults = dict(data.get("defaults") or {})
    assets = {}
    for key, aspec in (data.get("assets") or {}).items():
        akp = ("assets", key)
        S.check(doc, ASSET_NODE, aspec, akp)
        href = _compile_template(aspec["href"], doc.where(akp + ("href",)))
        fields = {
            fname: compile_value(doc, fspec, akp + ("fields", fname))
            for fname, fspec in (aspec.get("fields") or {}).items()
        }
        static = {k: aspec[k] for k in ("type", "roles", "title", "description") if k in aspec}
        assets[key] = (href, fields, static, aspec.get("optional", False))
    links = [
        (_compile_template(l["href"], doc.where(("links", i, "href"))), {k: v for k, v in l.items() if k != "href"})
        for i, l in enumerate(data.get("links") or [])
    ]
    extensions = sorted(set(data.get("stac_extensions") or []))

    def render(record: dict, collection: str, extra_defaults: dict | None = None) -> dict:
        # every field is tried: a record's failure names all its bad fields, not only the first
        problems: list[MappingError] = []

        def attempt(field: str, get: Callable[..., Any], *args: Any) -> Any:
            try:
                return get(*args)
            except MappingError as exc:
                problems.append(exc)
            except _Missing as m:
                problems.append(MappingError(field, f"no value for {{{m.what}}}"))
            return OMIT

        ctx = {"$collection": collection}
        item_id = attempt("id", get_id, record, ctx)
        if item_id is OMIT and not problems:
            problems.append(MappingError("id", "no value"))
        ctx["$id"] = item_id if item_id is not OMIT else None
        properties: dict[str, Any] = {}
        for name, getter in dt_getters.items():
            v = attempt(name, getter, record, ctx)
            if v is not OMIT:
                properties[name] = v
        if "datetime" not in properties and not any(p.field in dt_getters for p in problems):
            if "start_datetime" not in properties or "end_datetime" not in properties:
                problems.append(MappingError("datetime", "no datetime and no start_datetime/end_datetime"))
            properties["datetime"] = None
        if "start_datetime" in properties and "end_datetime" in properties:
            if sortable_datetime(properties["start_datetime"]) > sortable_datetime(properties["end_datetime"]):
                problems.append(MappingError("end_datetime", "is before start_datetime"))
        for name, getter in props.items():
            v = attempt(f"properties.{name}", getter, record, ctx)
            if v is not OMIT:
                properties[name] = v
        for source in (defaults, extra_defaults or {}):
            for name, v in source.items():
                if properties.get(name) is None:
                    properties[name] = v
        geometry = attempt("geometry", get_geom, record, ctx)
        bbox = attempt("bbox", get_bbox, record, ctx) if get_bbox is not None else None
        if bbox in (None, OMIT) and geometry not in (None, OMIT):
            try:
                bbox = coords_bbox(geometry)
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                problems.append(MappingError("geometry", f"invalid coordinates: {exc}"))
        item_assets = {}
        for key, (href, fields, static, optional) in assets.items():
            try:
                a = {"href": href(record, ctx)}
            except _Missing as m:
                if not optional:
                    problems.append(MappingError(f"assets.{key}.href", f"no value for {{{m.what}}}"))
                continue
            a.update(static)
            for fname, getter in fields.items():
                v = attempt(f"assets.{key}.{fname}", getter, record, ctx)
                if v is not OMIT:
                    a[fname] = v
            item_assets[key] = a
        item_links = [link for href, rest in links if (link := attempt("links.href", _link, href, rest, record, ctx)) is not OMIT]
        if problems:
            raise MappingError.of(problems)
        item: dict[str, Any] = {
            "type": "Feature",
            "stac_version": STAC_VERSION,
            "stac_extensions": extensions,
            "id": item_id,
            "geometry": geometry,
            "properties": properties,
            "assets": item_assets,
            "links": item_links,
            "collection": collection,
        }
        if bbox is not None:
            item["bbox"] = bbox
        return item

    return MappingSpec(path=str(doc.path), data=data, digest=digest_obj(data), render=render)


def item_time_range(item: dict) -> tuple[str, str]:
    """(start, end) of an item as sortable datetime strings."""
    p = item["properties"]
    start = p.get("start_datetime") or p["datetime"]
    end = p.get("end_datetime") or p["datetime"]
    return sortable_datetime(start), sortable_datetime(end)
