"""Canonical JSON and digests. Standard library and orjson only."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

FORMAT_VERSION = "2"
"""Bumped when the output format changes, so every item is re-rendered."""

_CANON = orjson.OPT_SORT_KEYS
_PRETTY = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2


def canonical_json(obj: Any) -> bytes:
    """Compact, key-sorted JSON: the form that is hashed."""
    return orjson.dumps(obj, option=_CANON)


def pretty_json(obj: Any) -> bytes:
    """The on-disk form of every JSON output: sorted keys, 2-space indent, trailing newline."""
    return orjson.dumps(obj, option=_PRETTY) + b"\n"


def digest_bytes(data: bytes) -> str:
    """Internal state digest (blake2b-128, hex). Not used in published manifests."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def digest_obj(obj: Any) -> str:
    return digest_bytes(canonical_json(obj))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_file(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
