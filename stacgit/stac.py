"""What the STAC specification fixes, said once: the version stacgit writes, the link relations
a static catalog owns, and the media types of what it writes."""

from __future__ import annotations

STAC_VERSION = "1.1.0"

STRUCTURAL_RELS = frozenset({"self", "root", "parent", "collection", "child", "item"})
"""Links a static catalog makes itself, with relative hrefs: rebuilt for items that pass
through, dropped where the catalog's files are not (pgstac, GeoParquet), and warned about when
absolute in a self-contained catalog."""

API_RELS = frozenset({"items"})
"""Links only a STAC API has: meaningless in a static copy of its items."""

JSON = "application/json"
GEOJSON = "application/geo+json"
PARQUET = "application/vnd.apache.parquet"
