"""The build engine: the units the runner schedules, in the order they run.

* ``shard``       one source file's records -> item bodies (``map_shard`` needs no state store)
* ``collection``  a collection's items written where the layout puts them, sub-catalogs and
                  collection.json, what it wrote validated (``items``: the plan and extent)
* ``stacgit.exports``  the collection's GeoParquet and pgstac files
* ``catalog``     catalog.json, manifest.json (from per-collection fragments, ``manifest``) and
                  failed.ndjson; outputs of collections no longer configured removed

Files are written (atomically) before the state rows that describe them are committed.
"""

from stacgit.engine.catalog import build_catalog, remove_catalog_output
from stacgit.engine.collection import build_collection, validate_written
from stacgit.engine.items import patch_location, patch_reason
from stacgit.engine.shard import BuildOptions, build_shard, cache_dir, failure_message, location

__all__ = [
    "BuildOptions", "build_catalog", "build_collection", "build_shard", "cache_dir", "failure_message", "location",
    "patch_location", "patch_reason", "remove_catalog_output", "validate_written",
]
