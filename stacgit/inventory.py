"""Read-only views of a repository and its build state (for ``stacgit ls``)."""

from __future__ import annotations

from stacgit.state import reports
from stacgit import state as st
from stacgit.errors import ConfigError
from stacgit.project import Project


def list_collections(project: Project) -> list[dict]:
    con = st.connect(project.state_dir)
    counts = reports.item_counts(con)
    rows = []
    for coll in project.iter_collections():
        try:
            sources = len(project.shard_paths(coll))
        except ConfigError:
            sources = 0
        rows.append(
            {
                "catalog": coll.catalog_id,
                "collection": coll.id,
                "title": coll.meta.get("title", ""),
                "items": counts.get((coll.catalog_id, coll.id), 0),
                "sources": sources,
            }
        )
    return rows
