"""GeoParquet and pgstac exports of a built collection, partition by partition (``collection``:
the task; ``changes``: what changed, in SQLite; ``partition``: one partition's files in one
pass; ``geoparquet`` and ``pgstac``: the two formats).

The export task of a collection runs after its items are written. It compares the items'
output digests with the ``exported`` table (the state the exports reflect) and rewrites only
the partitions (year, year-month, or one file) whose items were added, changed or removed:

  build/<catalog>/<collection>/parquet/<partition>.parquet   stac-geoparquet, explicit schema
  build/<catalog>/pgstac/<collection>/<partition>.ndjson     the same items in pgstac form

The pgstac files ("pieces") are partitioned like the parquet files, so a change rewrites (and
publishing uploads) only the partitions it touched, and ``pypgstac load`` takes them one chunk
at a time. With ``pgstac: false`` the pieces are still written, under
``.stacgit/exports/<catalog>/<collection>/``: the export takes unchanged rows from the old
files as they are, and the export of both formats is one pass.

Rows of a partition are sorted by datetime (an item's start: ``start_datetime``, else
``datetime``), then id. Items are read in batches, so memory does not grow with the collection.
The Arrow schema comes from :mod:`stacgit.columns`; an item that does not fit it stops the
export with a "schema drift" error naming the item and field, and the partitions already
written stay as they were.
"""

from stacgit.exports.collection import catalog_exports, export_collection, export_stale, item_columns
from stacgit.exports.geoparquet import PARTITION_WIDTH, json_schema, parquet_assets, partition_key
from stacgit.exports.pgstac import pgstac_line, pieces_root

__all__ = ["PARTITION_WIDTH", "catalog_exports", "export_collection", "export_stale", "item_columns", "json_schema",
           "parquet_assets", "partition_key", "pgstac_line", "pieces_root"]
