"""The extensions stacgit ships: dgeo, alternate-assets, file, and ``schema`` (any other
extension by URI with a field mapping)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from stacgit.errors import ConfigError, MappingError
from stacgit.extensions import Extension, Problem, add_uri, config_type, json_pointer

ALL_ASSETS = "*"



def _target_assets(doc: dict, key: str) -> list[tuple[str, dict]]:
    assets = doc.get("assets") or {}
    if key == ALL_ASSETS:
        return sorted(assets.items())
    return [(key, assets[key])] if key in assets else []


def _mapping(config: dict, key: str, where: str) -> dict:
    value = config.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.{key}: must be a mapping")
    return value


def _only(config: dict, allowed: set[str], where: str) -> None:
    from stacgit import _spec as S

    for k in config:
        if k not in allowed:
            raise ConfigError(f"{where}.{k}: unknown key{S.did_you_mean(str(k), sorted(allowed))}")


class SchemaExtension(Extension):
    """Any extension given by its schema URI, with the fields to set::

        {uri: URL, properties: {field: value}, assets: {key or '*': {field: value}},
         collection: {field: value}}

    ``properties`` go into item properties; ``collection`` fields onto the collection document
    (``summaries``, ``item_assets``, or the extension's collection-level fields)."""

    name = "schema"

    def check_config(self, config: dict, where: str) -> None:
        _only(config, {"uri", "properties", "assets", "collection"}, where)
        uri = config.get("uri")
        if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
            raise ConfigError(f"{where}.uri: the extension's schema URL is required, e.g. https://stac-extensions.github.io/projection/v2.0.0/schema.json")
        for key in ("properties", "assets", "collection"):
            _mapping(config, key, where)

    def apply(self, doc: dict, config: dict) -> dict:
        """Items always declare the URI; a collection only when ``collection`` fields are
        configured (many extensions require fields of a collection that declares them)."""
        if doc.get("type") == "Feature":
            add_uri(doc, config["uri"])
            doc["properties"].update(config.get("properties") or {})
            for key, fields in (config.get("assets") or {}).items():
                for _, asset in _target_assets(doc, key):
                    asset.update(fields)
        elif doc.get("type") == "Collection" and config.get("collection"):
            add_uri(doc, config["uri"])
            for k, v in config["collection"].items():
                doc[k] = v
        return doc

    def columns(self, config: dict) -> dict:
        return {
            "properties": {k: config_type(v) for k, v in (config.get("properties") or {}).items()},
            "assets": {key: {k: config_type(v) for k, v in fields.items()} for key, fields in (config.get("assets") or {}).items()},
        }


CID = re.compile(r"^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{58,}|B[A-Z2-7]{58,}|z[1-9A-HJ-NP-Za-km-z]{48,})$")


class DgeoExtension(Extension):
    """Decentralized Geospatial (pgstac variant)::

        {cids: list or ';'-separated string, piece_cids: ..., assets: {key: {cid: ..., cid_profile: {...}}}}

    The item's ``dgeo:cids`` always include every asset ``dgeo:cid`` (the schema says so in
    prose only; :meth:`check` enforces it on documents from anywhere)."""

    name = "dgeo"
    schema_uri = "https://raw.githubusercontent.com/DecentralizedGeo/dgeo-asset/refs/heads/pgstac-variant/json-schema/schema.json"
    prefixes = ("dgeo",)

    def check_config(self, config: dict, where: str) -> None:
        _only(config, {"cids", "piece_cids", "assets"}, where)
        for key, fields in _mapping(config, "assets", where).items():
            if not isinstance(fields, dict):
                raise ConfigError(f"{where}.assets.{key}: must be a mapping with cid and/or cid_profile")
            _only(fields, {"cid", "cid_profile"}, f"{where}.assets.{key}")

    @staticmethod
    def _list(value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            return [v.strip() for v in value.split(";") if v.strip()]
        if isinstance(value, list):
            return [str(v) for v in value if v is not None and str(v).strip()]
        raise MappingError("cids", f"must be a list or a ';'-separated string, got {type(value).__name__}")

    def apply(self, doc: dict, config: dict) -> dict:
        is_item = doc.get("type") == "Feature"
        target = doc["properties"] if is_item else doc
        cids = self._list(config.get("cids"))
        for key, fields in sorted((config.get("assets") or {}).items()):
            for _, asset in _target_assets(doc, key):
                cid = fields.get("cid")
                if cid:
                    asset["dgeo:cid"] = cid
                    if cid not in cids:
                        cids.append(cid)
                if fields.get("cid_profile"):
                    asset["dgeo:cid_profile"] = fields["cid_profile"]
        if cids:
            target["dgeo:cids"] = cids
        pieces = self._list(config.get("piece_cids"))
        if pieces:
            target["dgeo:piece_cids"] = pieces
        if is_item or cids:  # a collection declares dgeo only when it has CIDs of its own
            add_uri(doc, self.schema_uri)
        return doc

    def columns(self, config: dict) -> dict:
        assets = {key: {"dgeo:cid": "string", "dgeo:cid_profile": "json"} for key in config.get("assets") or {}}
        return {"properties": {"dgeo:cids": "list<string>", "dgeo:piece_cids": "list<string>"}, "assets": assets}

    def check(self, doc: dict) -> list[Problem]:
        if doc.get("type") == "Feature":
            props = doc.get("properties") or {}
            declared, base = props.get("dgeo:cids"), ("properties", "dgeo:cids")
        else:
            declared, base = doc.get("dgeo:cids"), ("dgeo:cids",)
        declared = declared if isinstance(declared, list) else []
        out = []
        for key, asset in sorted((doc.get("assets") or {}).items()):
            cid = asset.get("dgeo:cid") if isinstance(asset, dict) else None
            if cid is not None and cid not in declared:
                out.append(Problem(self.schema_uri, f"asset dgeo:cid is not listed in {'/'.join(base)}", json_pointer("assets", key, "dgeo:cid")))
        return out


ALTERNATE_URI = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"


class AlternateAssetsExtension(Extension):
    """alternate-assets v1.2.0: add alternate locations to assets::

        {assets: [key, ...] or '*' (default: every asset with an http(s) href),
         alternates: {name: {href: template, title: ..., ...}},
         name: 'HTTPS'   # optional alternate:name of the primary href}

    ``href`` templates see ``{href}``, ``{key}``, ``{host}``, ``{path}`` (without the leading
    '/') and ``{filename}`` of the asset; a ``replace: [regex, replacement]`` pair rewrites the
    primary href instead."""

    name = "alternate-assets"
    schema_uri = ALTERNATE_URI
    prefixes = ("alternate",)
    _PLACEHOLDER = re.compile(r"\{(href|key|host|path|filename)\}")

    def check_config(self, config: dict, where: str) -> None:
        _only(config, {"assets", "alternates", "name"}, where)
        alts = _mapping(config, "alternates", where)
        if not alts:
            raise ConfigError(f"{where}.alternates: name at least one alternate, e.g. {{s3: {{href: 's3://bucket/{{path}}'}}}}")
        for name, alt in alts.items():
            w = f"{where}.alternates.{name}"
            if not isinstance(alt, dict) or ("href" in alt) == ("replace" in alt):
                raise ConfigError(f"{w}: needs exactly one of href (a template) or replace ([regex, replacement])")
            if "replace" in alt:
                pair = alt["replace"]
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
                    raise ConfigError(f"{w}.replace: must be [regex, replacement]")
                try:
                    re.compile(pair[0])
                except re.error as exc:
                    raise ConfigError(f"{w}.replace: invalid regex: {exc}") from None
            elif not isinstance(alt["href"], str):
                raise ConfigError(f"{w}.href: must be a string template")
        assets = config.get("assets", ALL_ASSETS)
        if assets != ALL_ASSETS and not (isinstance(assets, list) and all(isinstance(a, str) for a in assets)):
            raise ConfigError(f"{where}.assets: must be '*' or a list of asset keys")

    def _href(self, alt: dict, key: str, href: str) -> str:
        if "replace" in alt:
            pattern, repl = alt["replace"]
            return re.sub(pattern, repl, href)
        parts = urlsplit(href)
        values = {"href": href, "key": key, "host": parts.netloc, "path": parts.path.lstrip("/"), "filename": parts.path.rsplit("/", 1)[-1]}
        return self._PLACEHOLDER.sub(lambda m: values[m.group(1)], alt["href"])

    def apply(self, doc: dict, config: dict) -> dict:
        assets = doc.get("assets") or {}
        chosen = config.get("assets", ALL_ASSETS)
        keys = [k for k, a in sorted(assets.items()) if str(a.get("href", "")).startswith(("https://", "http://"))] if chosen == ALL_ASSETS else [k for k in chosen if k in assets]
        if not keys:
            return doc
        add_uri(doc, self.schema_uri)
        for key in keys:
            asset = assets[key]
            alternate = {}
            for name, alt in sorted(config["alternates"].items()):
                entry = {"alternate:name": name, **{k: v for k, v in alt.items() if k not in ("href", "replace")}}
                entry["href"] = self._href(alt, key, asset["href"])  # named: clients label each alternate by it
                alternate[name] = entry
            asset["alternate"] = alternate
            if config.get("name"):
                asset["alternate:name"] = config["name"]
        return doc

    def columns(self, config: dict) -> dict:
        chosen = config.get("assets", ALL_ASSETS)
        keys = [ALL_ASSETS] if chosen == ALL_ASSETS else chosen
        return {"assets": {k: {"alternate": "json", "alternate:name": "string"} for k in keys}}

    def check(self, doc: dict) -> list[Problem]:
        out = []
        for key, asset in sorted((doc.get("assets") or {}).items()):
            if not isinstance(asset, dict) or "alternate" not in asset:
                continue
            alt = asset["alternate"]
            where = ("assets", key, "alternate")
            if not isinstance(alt, dict) or not alt:
                out.append(Problem(self.schema_uri, "alternate must be a non-empty object of named alternates", json_pointer(*where)))
                continue
            for name, entry in sorted(alt.items()):
                if not isinstance(entry, dict):
                    out.append(Problem(self.schema_uri, "an alternate must be an object", json_pointer(*where, name)))
                elif not isinstance(entry.get("href"), str) or not entry["href"]:
                    out.append(Problem(self.schema_uri, "an alternate needs an href", json_pointer(*where, name)))
        return out


FILE_URI = "https://stac-extensions.github.io/file/v2.1.0/schema.json"

# multihash: algorithm -> (code prefix hex, digest length in bytes)
MULTIHASH = {"sha2-256": ("12", 32), "sha2-512": ("13", 64), "sha1": ("11", 20), "md5": ("d5", 16)}


def multihash(hex_digest: str, algorithm: str) -> str:
    """``file:checksum`` value: a hex digest as a hex multihash (already-encoded ones pass)."""
    code, size = MULTIHASH[algorithm]
    digest = hex_digest.strip().lower()
    if not re.fullmatch(r"[0-9a-f]+", digest):
        raise MappingError("checksum", f"{hex_digest!r} is not a hex digest")
    prefix = code + f"{size:02x}"
    if len(digest) == 2 * size + len(prefix) and digest.startswith(prefix):
        return digest
    if len(digest) != 2 * size:
        raise MappingError("checksum", f"a {algorithm} digest has {2 * size} hex characters, got {len(digest)}")
    return prefix + digest


class FileExtension(Extension):
    """file v2.1.0: ``file:size`` and ``file:checksum`` of assets from source listings::

        {assets: {key or '*': {size: {path: bytes, type: int}, checksum: {path: sha256},
                               algorithm: sha2-256}}}

    Present values are written; a missing one leaves the field out. Changed content upstream
    becomes a visible diff of the item."""

    name = "file"
    schema_uri = FILE_URI
    prefixes = ("file",)

    def check_config(self, config: dict, where: str) -> None:
        _only(config, {"assets"}, where)
        for key, fields in _mapping(config, "assets", where).items():
            if not isinstance(fields, dict):
                raise ConfigError(f"{where}.assets.{key}: must be a mapping")
            _only(fields, {"size", "checksum", "algorithm"}, f"{where}.assets.{key}")
            algo = fields.get("algorithm", "sha2-256")
            if algo not in MULTIHASH:
                raise ConfigError(f"{where}.assets.{key}.algorithm: must be one of {', '.join(MULTIHASH)}")

    def apply(self, doc: dict, config: dict) -> dict:
        touched = False
        for key, fields in sorted((config.get("assets") or {}).items()):
            for _, asset in _target_assets(doc, key):
                size = fields.get("size")
                if size is not None:
                    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                        raise MappingError(f"assets.{key}.size", f"must be a non-negative integer, got {size!r}")
                    asset["file:size"] = size
                    touched = True
                checksum = fields.get("checksum")
                if checksum:
                    asset["file:checksum"] = multihash(str(checksum), fields.get("algorithm", "sha2-256"))
                    touched = True
        if touched:
            add_uri(doc, self.schema_uri)
        return doc

    def columns(self, config: dict) -> dict:
        return {"assets": {key: {"file:size": "int64", "file:checksum": "string"} for key in config.get("assets") or {}}}


BUILTIN: tuple[type[Extension], ...] = (SchemaExtension, DgeoExtension, AlternateAssetsExtension, FileExtension)
