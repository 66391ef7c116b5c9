"""Extensions as plugins.

An :class:`Extension` has a name, a schema URI, ``apply(document, config) -> document`` and
optional ``check(document) -> [Problem]`` for what its schema cannot say. Built-in extensions
live in :mod:`stacgit.extensions.builtin`; third-party packages register theirs under the
entry-point group ``stacgit.extensions`` (``name = "package.module:ExtensionClass"``), loaded
only when a catalog names them or a document declares their schema.

A collection uses extensions in catalog.yaml::

    extensions:
      - name: schema
        config:
          uri: https://stac-extensions.github.io/pointcloud/v2.0.0/schema.json
          properties: {"pc:count": {path: point_count, type: int}}

Config values written as mapping value specs (``{path: ...}``, ``{template: ...}``,
``{value: ...}`` with the usual options) are evaluated against the source record of each item;
everything else is a literal. Collection documents see literals only.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from stacgit import _spec as S
from stacgit._yaml import KeyPath, Located
from stacgit.columns import value_type
from stacgit.errors import ConfigError, MappingError
from stacgit.hashing import digest_obj
from stacgit.mapping import OMIT, SOURCE_KEYS, VALUE_FIELDS, MappingSpec, compile_value, spec_type

ENTRY_POINT_GROUP = "stacgit.extensions"


@dataclass(frozen=True)
class Problem:
    """One finding about one document. ``schema`` names what found it (a schema URL, an
    extension's schema URI, or ``lint:<rule>``); ``pointer`` is a JSON pointer."""

    schema: str
    message: str
    pointer: str = ""
    severity: str = "error"  # error | warning


def json_pointer(*parts: Any) -> str:
    """RFC 6901 pointer of a path of keys and indexes ('' for the whole document)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


class Extension:
    """Base class of extension plugins. Subclasses set ``name`` and ``schema_uri`` and
    override :meth:`apply`; :meth:`check_config` and :meth:`check` are optional."""

    name: ClassVar[str] = ""
    schema_uri: ClassVar[str | None] = None
    prefixes: ClassVar[tuple[str, ...]] = ()
    """Field prefixes (``"pc"`` for ``pc:count``), for the lint that pairs fields with URIs."""
    version: ClassVar[str] = "1"
    """Bump when ``apply`` produces different output for the same config (rebuilds items)."""

    def check_config(self, config: dict, where: str) -> None:
        """Raise ConfigError naming ``where`` when ``config`` cannot work."""

    def apply(self, doc: dict, config: dict) -> dict:
        raise NotImplementedError

    def check(self, doc: dict) -> list[Problem]:
        return []

    def columns(self, config: dict) -> dict:
        """Item fields this extension (with this config) sets and their column types (see
        ``stacgit.columns``): ``{"properties": {name: type}, "assets": {key or '*': {name: type}}}``.
        GeoParquet's schema is built from these; a field left out is schema drift at export."""
        return {}

    def uris(self, config: dict | None = None) -> tuple[str, ...]:
        """Schema URIs this extension (with this config) adds to documents."""
        uri = (config or {}).get("uri") or self.schema_uri
        return (uri,) if uri else ()


def add_uri(doc: dict, uri: str) -> None:
    exts = doc.setdefault("stac_extensions", [])
    if uri not in exts:
        exts.append(uri)
        exts.sort()


# --------------------------------------------------------------------------- registry

_LOADED: dict[str, Extension] = {}


def _builtin() -> dict[str, type[Extension]]:
    from stacgit.extensions import builtin

    return {cls.name: cls for cls in builtin.BUILTIN}


def get_extension(name: str) -> Extension:
    """The extension called ``name``: built in, or from an installed package's entry point."""
    ext = _LOADED.get(name)
    if ext is not None:
        return ext
    cls = _builtin().get(name)
    if cls is None:
        eps = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not eps:
            known = sorted(set(_builtin()) | {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})
            raise KeyError(f"unknown extension '{name}'{S.did_you_mean(name, known)}; known: {', '.join(known)}")
        try:
            cls = eps[0].load()
        except Exception as exc:  # a broken plugin must not take stacgit down with a traceback
            raise KeyError(f"extension '{name}' ({eps[0].value}) failed to load: {type(exc).__name__}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Extension)):
            raise KeyError(f"extension '{name}' ({eps[0].value}) is not a stacgit.extensions.Extension subclass")
    ext = _LOADED[name] = cls()
    return ext


def plugin_version(name: str) -> str:
    """Version of the distribution providing an entry-point extension ('' for built-ins)."""
    if name in _builtin():
        return ""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name and ep.dist is not None:
            return f"{ep.dist.name}=={ep.dist.version}"
    return ""


def all_extensions() -> list[Extension]:
    """Every extension available (built-in and installed), for URI-driven checks and lint."""
    names = set(_builtin()) | {ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    out = []
    for name in sorted(names):
        try:
            out.append(get_extension(name))
        except KeyError:
            continue
    return out


# --------------------------------------------------------------------------- config

Expr = Callable[[dict, dict], Any]
_VALUE_KEYS = set(VALUE_FIELDS)


def config_type(node: Any) -> str:
    """Column type of a config value: a value spec's type, or the constant's."""
    return spec_type(node) if _is_expr(node) else value_type(node)


def _is_expr(node: Any) -> bool:
    return isinstance(node, dict) and bool(node) and set(node) <= _VALUE_KEYS and len(set(node) & set(SOURCE_KEYS)) == 1


def compile_config(doc: Located, config: Any, kp: KeyPath) -> Callable[[dict | None], Any]:
    """Turn a config tree into ``resolve(record) -> plain data``. Value specs inside it are
    compiled like mapping fields; ``resolve(None)`` (a collection document) leaves out every
    value that needs a record."""
    if _is_expr(config):
        getter = compile_value(doc, config, kp)
        needs_record = "value" not in config

        def resolve_expr(rec: dict | None) -> Any:
            if rec is None and needs_record:
                return OMIT
            return getter(rec or {}, {})

        return resolve_expr
    if isinstance(config, dict):
        subs = {k: compile_config(doc, v, kp + (k,)) for k, v in config.items()}

        def resolve_map(rec: dict | None) -> Any:
            out = {}
            for k, sub in subs.items():
                v = sub(rec)
                if v is not OMIT:
                    out[k] = v
            return out

        return resolve_map
    if isinstance(config, list):
        items = [compile_config(doc, v, kp + (i,)) for i, v in enumerate(config)]
        return lambda rec: [v for v in (f(rec) for f in items) if v is not OMIT]
    return lambda rec: config


@dataclass(frozen=True)
class ExtensionUse:
    """One ``extensions:`` entry of a collection, checked and compiled."""

    ext: Extension
    raw: dict
    resolve: Callable[[dict | None], Any]
    where: str

    @property
    def fingerprint(self) -> list:
        return [self.ext.name, self.ext.version, plugin_version(self.ext.name), self.raw]


def compile_uses(doc: Located, entries: list, kp: KeyPath) -> list[ExtensionUse]:
    uses = []
    for i, entry in enumerate(entries):
        ekp = kp + (i,)
        try:
            ext = get_extension(entry["name"])
        except KeyError as exc:
            raise S.fail(doc, ekp + ("name",), exc.args[0]) from None
        config = entry.get("config") or {}
        where = doc.where(ekp + ("config",))
        ext.check_config(config, f"{where}: {S.keypath_str(ekp + ('config',))}")
        uses.append(ExtensionUse(ext, config, compile_config(doc, config, ekp + ("config",)), where))
    return uses


def with_extensions(spec: MappingSpec, uses: list[ExtensionUse]) -> MappingSpec:
    """The mapping whose items also pass through each extension's ``apply``."""
    if not uses:
        return spec
    base = spec.render

    def render(record: dict, collection: str, extra_defaults: dict | None = None) -> dict:
        item = base(record, collection, extra_defaults)
        for use in uses:
            try:
                item = use.ext.apply(item, use.resolve(record))
            except MappingError as exc:
                raise MappingError(f"extensions.{use.ext.name}.{exc.field}", exc.reason) from None
            except (ValueError, TypeError, KeyError) as exc:
                raise MappingError(f"extensions.{use.ext.name}", f"{type(exc).__name__}: {exc}") from None
        return item

    digest = digest_obj([spec.digest, [u.fingerprint for u in uses]])
    return MappingSpec(path=spec.path, data=spec.data, digest=digest, render=render, reads=spec.reads)


def apply_to_collection(doc: dict, uses: list[ExtensionUse]) -> dict:
    for use in uses:
        try:
            doc = use.ext.apply(doc, use.resolve(None))
        except (MappingError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{use.where}: extension '{use.ext.name}' cannot apply to collection {doc.get('id')}: {exc}") from None
    return doc
