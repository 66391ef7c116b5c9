"""Where JSON schemas come from: an offline-first store keyed by canonical URL.

Resolution order (first hit wins):

1. pystac's bundled STAC core schemas (1.1.0 item/catalog/collection and GeoJSON);
2. schema directories laid out ``<host>/<url path>`` (the catalog repo's ``schemas/``,
   ``--schema-dir``, ``STACGIT_SCHEMA_DIR``, in that order);
3. the user cache ``$XDG_CACHE_HOME/stacgit/schemas`` (same layout);
4. the network, only when the store was opened ``online`` (``stacgit validate``,
   ``stacgit schemas pull``); a fetched schema is written to the cache.

A URL that none of these has raises :class:`SchemaUnavailable`; callers report it as its own
status, never as a pass. The build never opens the store online.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator
from urllib.parse import urljoin, urlsplit

import orjson

from stacgit.hashing import digest_obj

FETCH_TIMEOUT = 15.0
MAX_SCHEMA_BYTES = 8 << 20


class SchemaUnavailable(Exception):
    """No source of the store has this schema (and the network was off or failed)."""

    def __init__(self, url: str, why: str = "not in the schema store"):
        super().__init__(f"{url}: {why}")
        self.url = url
        self.why = why


def canonical_url(url: str) -> str:
    """``https://host/path`` without fragment; ``#`` at the end maps to the same document."""
    return url.split("#", 1)[0]


def url_to_relpath(url: str) -> PurePosixPath | None:
    """``https://host/a/b.json`` -> ``host/a/b.json``; None for URLs that cannot be stored safely."""
    parts = urlsplit(canonical_url(url))
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        return None
    rel = PurePosixPath(parts.netloc.lower() + parts.path)
    if any(p in ("", ".", "..") for p in rel.parts) or rel.name == "":
        return None
    return rel


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stacgit" / "schemas"


_CORE_FILES = {
    "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/": ("item", "bands", "basics", "common", "data-values", "datetime", "instrument", "licensing", "provider"),
    "https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/": ("catalog",),
    "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/": ("collection",),
}


def core_schema_files() -> dict[str, Path]:
    """URL -> file of the STAC 1.1.0 core and GeoJSON schemas pystac ships as package data.

    They are read as files: pystac's own ``local_validator`` imports ``jsonschema``, which is
    not a dependency of a plain install, so going through it would validate nothing there."""
    from importlib.resources import files

    root = Path(str(files("pystac").joinpath("validation", "jsonschemas")))
    out = {base + name + ".json": root / "stac-spec" / "v1.1.0" / f"{name}.json" for base, names in _CORE_FILES.items() for name in names}
    out.update({f"https://geojson.org/schema/{name}.json": root / "geojson" / f"{name}.json" for name in ("Feature", "Geometry")})
    return out


def _bundled() -> dict[str, dict]:
    return {url: orjson.loads(path.read_bytes()) for url, path in core_schema_files().items()}


@dataclass
class SchemaStore:
    dirs: list[Path] = field(default_factory=list)
    cache_dir: Path | None = None
    online: bool = False
    _docs: dict[str, dict] = field(default_factory=dict, repr=False)
    _origin: dict[str, str] = field(default_factory=dict, repr=False)
    _bytes: dict[str, bytes] = field(default_factory=dict, repr=False)
    _bundle: dict[str, dict] | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        repo_root: Path | None = None,
        extra_dirs: Iterable[str | os.PathLike] = (),
        online: bool = False,
        use_cache: bool = True,
    ) -> "SchemaStore":
        dirs: list[Path] = []
        if repo_root is not None and (Path(repo_root) / "schemas").is_dir():
            dirs.append(Path(repo_root) / "schemas")
        dirs += [Path(d) for d in extra_dirs]
        env = os.environ.get("STACGIT_SCHEMA_DIR")
        if env:
            dirs += [Path(p) for p in env.split(os.pathsep) if p]
        return cls(dirs=dirs, cache_dir=default_cache_dir() if use_cache else None, online=online)

    # ------------------------------------------------------------------ lookup

    def get(self, url: str) -> dict:
        key = canonical_url(url)
        doc = self._docs.get(key)
        if doc is not None:
            return doc
        doc, origin, raw = self._load(key)
        self._docs[key] = doc
        self._origin[key] = origin
        if raw is not None:
            self._bytes[key] = raw
        return doc

    def origin(self, url: str) -> str:
        """Where a schema that :meth:`get` returned came from (for reports and fingerprints)."""
        return self._origin.get(canonical_url(url), "")

    def raw(self, url: str) -> bytes | None:
        """The bytes a schema that :meth:`get` returned was read or downloaded as (None for
        pystac's bundled ones, which exist only as parsed data)."""
        return self._bytes.get(canonical_url(url))

    def _load(self, url: str) -> tuple[dict, str, bytes | None]:
        if self._bundle is None:
            self._bundle = _bundled()
        if url in self._bundle:
            return self._bundle[url], "pystac", None
        rel = url_to_relpath(url)
        if rel is None:
            raise SchemaUnavailable(url, "not an http(s) URL that can be stored")
        roots = list(self.dirs) + ([self.cache_dir] if self.cache_dir else [])
        for root in roots:
            path = root.joinpath(*rel.parts)
            if path.is_file():
                data = path.read_bytes()
                return _parse(data, str(path)), str(root), data
        if not self.online:
            raise SchemaUnavailable(url, "not in pystac's bundle, " + _where(roots) + ", and the network is off")
        data = fetch(url)
        doc = _parse(data, url)
        if self.cache_dir is not None:
            _write_atomic(self.cache_dir.joinpath(*rel.parts), data)
        return doc, "network", data

    # ------------------------------------------------------------------ closure

    def closure(self, url: str) -> Iterator[tuple[str, dict]]:
        """The schema at ``url`` and every schema it references through ``$ref``, once each.
        Raises SchemaUnavailable for the first one that cannot be found."""
        seen: set[str] = set()
        todo = [canonical_url(url)]
        while todo:
            u = todo.pop()
            if u in seen or u in _BUILTIN_META:
                continue
            seen.add(u)
            doc = self.get(u)
            yield u, doc
            for ref in _refs(doc):
                target = canonical_url(urljoin(u, ref))
                if target and target not in seen:
                    todo.append(target)

    def require(self, url: str, doc: dict | None = None) -> None:
        """Raise SchemaUnavailable unless the schema at ``url`` (or ``doc``, a schema from
        elsewhere whose base is ``url``) and every http(s) schema it references are found."""
        if doc is None:
            for _ in self.closure(url):
                pass
            return
        for ref in _refs(doc):
            target = canonical_url(urljoin(url, ref))
            if target.startswith(("https://", "http://")):
                self.require(target)

    def fingerprint(self, urls: Iterable[str]) -> str:
        """Digest of the content of these schemas and everything they reference (unavailable
        ones count as such), so verdicts are recomputed when a schema file changes."""
        parts = []
        for url in sorted(set(urls)):
            try:
                parts.append([url, sorted((u, digest_obj(d)) for u, d in self.closure(url))])
            except SchemaUnavailable:
                parts.append([url, None])
        return digest_obj(parts)


_BUILTIN_META = {
    "http://json-schema.org/draft-07/schema",
    "https://json-schema.org/draft-07/schema",
    "http://json-schema.org/draft-04/schema",
    "http://json-schema.org/draft-06/schema",
    "https://json-schema.org/draft/2019-09/schema",
    "https://json-schema.org/draft/2020-12/schema",
}


def _refs(doc) -> Iterator[str]:
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref" and isinstance(v, str) and not v.startswith("#"):
                    yield v
                elif isinstance(v, (dict, list)):
                    stack.append(v)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))


def _where(roots: list[Path]) -> str:
    if not roots:
        return "no schema directory"
    return "not under " + ", ".join(str(r) for r in roots)


def _parse(data: bytes, where: str) -> dict:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SchemaUnavailable(where, f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise SchemaUnavailable(where, "a schema must be a JSON object")
    return doc


def fetch(url: str) -> bytes:
    """GET one schema (timeout always set, redirects followed, size capped)."""
    import httpx

    try:
        with httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True) as client:
            resp = client.get(url)
    except httpx.HTTPError as exc:
        raise SchemaUnavailable(url, f"download failed: {type(exc).__name__}: {exc}") from None
    if resp.status_code != 200:
        raise SchemaUnavailable(url, f"download failed: HTTP {resp.status_code}")
    if len(resp.content) > MAX_SCHEMA_BYTES:
        raise SchemaUnavailable(url, "download is larger than 8 MB")
    return resp.content


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def pull(store: SchemaStore, urls: Iterable[str], dest: Path) -> tuple[list[str], list[SchemaUnavailable]]:
    """Copy every schema reachable from ``urls`` (nested ``$ref``s included) into ``dest``
    (``<host>/<path>`` layout), byte-for-byte as found. Returns (written urls, failures)."""
    written: list[str] = []
    failed: list[SchemaUnavailable] = []
    for url in sorted(set(urls)):
        try:
            for u, doc in store.closure(url):
                rel = url_to_relpath(u)
                if rel is None or store.origin(u) == "pystac":  # bundled with the package: nothing to pin
                    continue
                target = dest.joinpath(*rel.parts)
                if target.is_file():
                    continue
                _write_atomic(target, store.raw(u) or orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
                written.append(u)
        except SchemaUnavailable as exc:
            failed.append(exc)
    return sorted(set(written)), failed

