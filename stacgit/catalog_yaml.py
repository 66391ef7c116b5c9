"""The shape of ``catalog.yaml``: every key a catalog and a collection may have, with its type and
allowed values (``stacgit._spec`` nodes), checked before anything is loaded."""

from __future__ import annotations



from stacgit import _spec as S
from stacgit.columns import UNDECLARED


SPLIT_LEVELS = ("year", "month", "day")


ITEM_PATHS = ("{id}/{id}.json", "{id}.json")


DEFAULT_MAX_ITEMS = 1000


PARTITIONS = ("year", "month", "none")


_GEOPARQUET = S.Node(
    ("bool", "obj"),
    fields={
        "partition": S.Node("str", choices=PARTITIONS),
        "columns": S.mapping(S.STR),
        "undeclared": S.Node("str", choices=UNDECLARED),
    },
)


_PROVIDER = S.obj(
    {"name": S.STR, "description": S.STR, "roles": S.lst(S.STR), "url": S.STR},
    required=("name",),
)


LINK = S.obj({"rel": S.STR, "href": S.STR, "type": S.STR, "title": S.STR}, required=("rel", "href"))


_LAYOUT = S.obj(
    {
        "max_items_per_catalog": S.INT,
        "split": S.lst(S.Node("str", choices=SPLIT_LEVELS)),
        "item_path": S.Node("str", choices=ITEM_PATHS),
    }
)


API_KEYS = {
    "url": S.STR,
    "collection": S.STR,
    "method": S.Node("str", choices=("auto", "GET", "POST")),
    "datetime": S.STR,
    "bbox": S.lst(S.NUMBER),
    "intersects": S.obj({"type": S.STR, "coordinates": S.ANY}, required=("type", "coordinates")),
    "ids": S.lst(S.STR),
    "cql2": S.Node(("str", "obj")),
    "query": S.mapping(S.ANY),
    "page_size": S.INT,
    "window": S.Node("str", choices=("year", "month", "day", "none")),
    "max_window_items": S.INT,
    "concurrency": S.INT,
    "rate": S.NUMBER,
    "timeout": S.NUMBER,
    "retries": S.INT,
    "backoff": S.NUMBER,
    "max_pages": S.INT,
    "headers": S.mapping(S.obj({"env": S.STR}, required=("env",))),
    "profile": S.Node("str", choices=("cmr",)),
    "numeric": S.lst(S.STR),
    # http-json only
    "records": S.STR,
    "next": S.STR,
    "params": S.mapping(S.ANY),
    "key": S.STR,
    "head": S.STR,
}


HTTP_JSON_KEYS = ("url", "records", "next", "params", "key", "head", "headers", "timeout", "retries", "backoff", "rate", "concurrency", "max_pages")


_SOURCE = S.obj(
    {
        "type": S.Node("str", choices=("file", "stac-api", "http-json")),
        "path": S.Node(("str", "list")),
        "format": S.STR,  # a registered FileFormat (stacgit.sources)
        "delimiter": S.STR,
        **API_KEYS,
    },
    required=("type",),
)


_COLLECTION = S.obj(
    {
        "id": S.STR,
        "title": S.STR,
        "description": S.STR,
        "license": S.STR,
        "keywords": S.lst(S.STR),
        "providers": S.lst(_PROVIDER),
        "source": _SOURCE,
        "mapping": S.STR,
        "defaults": S.mapping(S.ANY),
        "layout": _LAYOUT,
        "extra_fields": S.mapping(S.ANY),
        "links": S.lst(LINK),
        "extensions": S.lst(S.obj({"name": S.STR, "config": S.mapping(S.ANY)}, required=("name",))),
        "validate": S.obj({"schemas": S.lst(S.STR)}),
        "geoparquet": _GEOPARQUET,
        "outputs": S.lst(S.STR),
    },
    required=("id", "description", "source"),
)


CATALOG_NODE = S.obj(
    {
        "id": S.STR,
        "title": S.STR,
        "description": S.STR,
        "license": S.STR,
        "links": S.Node(("map", "list")),
        "publish": S.obj({"base_url": S.STR, "max_delete_share": S.NUMBER, "max_delete_items": S.INT}),
        "layout": _LAYOUT,
        "geoparquet": _GEOPARQUET,
        "pgstac": S.BOOL,
        "collections": S.lst(_COLLECTION),
    },
    required=("id", "description", "collections"),
)
