"""Validate STAC documents against pystac's bundled STAC 1.1.0 core schemas, offline."""

from __future__ import annotations

from functools import lru_cache

import jsonschema
from referencing import Registry, Resource

ITEM = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"
CATALOG = "https://schemas.stacspec.org/v1.1.0/catalog-spec/json-schema/catalog.json"
COLLECTION = "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json"


@lru_cache(maxsize=1)
def _validators():
    from pystac.validation.local_validator import get_local_schema_cache

    cache = get_local_schema_cache()
    registry = Registry().with_resources((uri, Resource.from_contents(s)) for uri, s in cache.items())
    return {
        kind: jsonschema.Draft7Validator(cache[uri], registry=registry)
        for kind, uri in (("Feature", ITEM), ("Catalog", CATALOG), ("Collection", COLLECTION))
    }


def core_errors(doc: dict) -> list[str]:
    v = _validators()[doc["type"]]
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]
