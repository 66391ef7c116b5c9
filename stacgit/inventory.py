"""Read-only views of a repository and its build state (for ``stacgit ls``)."""

from __future__ import annotations

from stacgit import state as st
from stacgit.errors import ConfigError
from stacgit.project import Project


def list_collections(project: Project) -> list[dict]:
    con = st.connect(project.state_dir)
    counts = {
        (c, coll): n
        for c, coll, n in con.execute("SELECT catalog, collection, COUNT(*) FROM outputs WHERE kind='item' GROUP BY catalog, collection")
    }
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
