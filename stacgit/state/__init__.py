"""The build state: the only package that speaks SQL (SQLite under ``.stacgit/``).

``store`` opens the database and holds its schema; the other modules are the named operations
each stage needs (``shards``: what a source shard contributed). Callers hold a connection from
``connect`` and pass it to these operations.
"""

from stacgit.state.store import (
    COLLECTION_TABLES,
    EVERY_ITEM,
    SCHEMA_VERSION,
    STAC_KINDS,
    Transaction,
    connect,
    drop_catalog,
    drop_collection,
    is_outdated,
    item_count,
    item_signatures,
    known_collections,
    only_queued,
    outputs_under,
    reset,
    state_path,
)

__all__ = [
    "COLLECTION_TABLES", "EVERY_ITEM", "SCHEMA_VERSION", "STAC_KINDS", "Transaction", "connect", "drop_catalog",
    "drop_collection", "is_outdated", "item_count", "item_signatures", "known_collections", "only_queued",
    "outputs_under", "reset", "state_path",
]
