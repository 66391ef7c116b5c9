"""The catalog step: write catalog.json, manifest.json and failed.ndjson, and remove the
outputs of collections that are no longer configured. The manifest comes from the
collections' fragments (``engine.manifest``)."""

from __future__ import annotations

import shutil


from stacgit.state import catalogs
from stacgit import state as st
from stacgit.engine.shard import BuildOptions, cache_dir, location
from stacgit.hashing import canonical_json, sha256_bytes
from stacgit.exports import catalog_exports, pieces_root
from stacgit.plan import catalog_input_digest
from stacgit.project import CatalogSpec, Project
from stacgit.verdicts import open_validator, validate_catalog
from stacgit.state.reports import save_report
from stacgit.writers import AtomicWriter, link, render_catalog, same_content
from stacgit.engine.items import (
    patch_location, recover_pending,
)
from stacgit.exports.further import further_outputs, remove as remove_further
from stacgit.engine.manifest import fragment_path, fragments_dir, manifest_parts


def build_catalog(project: Project, cat: CatalogSpec, options: BuildOptions) -> dict:
    con = st.connect(project.state_dir)
    out_dir = project.build_dir / cat.id
    writer = AtomicWriter(out_dir, project.state_dir / "tmp")
    recover_pending(con, writer, cat.id, "")
    configured = {c.id for c in cat.collections}

    # collections removed from catalog.yaml: remove their outputs and state
    removed = sorted(catalogs.known_collections(con, cat.id) - configured)
    removed_items = 0
    for cid in removed:
        removed_items += catalogs.item_count(con, cat.id, cid)
        shutil.rmtree(out_dir / cid, ignore_errors=True)
        shutil.rmtree(out_dir / "pgstac" / cid, ignore_errors=True)
        shutil.rmtree(pieces_root(project, cat.id) / cid, ignore_errors=True)
        for rel in further_outputs(con, (cat.id, cid)):
            remove_further(out_dir, rel)
        for c in catalogs.forget_collection(con, cat.id, cid):
            (cache_dir(project, cat.id) / c).unlink(missing_ok=True)
        fragment_path(project, cat.id, cid).unlink(missing_ok=True)

    children = [  # a collection that failed on its first build is not linked until it builds
        link("child", f"./{c.id}/collection.json", title=c.meta.get("title", c.id)) for c in cat.collections if (out_dir / c.id / "collection.json").is_file()
    ]
    root = render_catalog(cat.id, cat.meta.get("title"), cat.meta["description"], "catalog.json", "catalog.json", None, children, cat.links)
    root_entry = (sha256_bytes(root), len(root))
    catalog_exports(project, con, cat, writer)
    manifest = manifest_parts(project, con, cat, root_entry)

    failures = [
        {"collection": c, "source": s, "location": location(s, loc), "field": f, "reason": r, "item_id": i}
        for c, s, loc, f, r, i in catalogs.record_failures(con, cat.id)
    ]
    failures += [
        {"collection": c, "source": key.rpartition("#")[0], "location": patch_location(key, op), "field": "patch", "reason": reason, "item_id": i}
        for c, key, op, i, reason in catalogs.patch_failures(con, cat.id)
    ]
    written = 0
    prior_root = catalogs.root_sha(con, cat.id)
    catalogs.begin_root(con, cat.id)
    if prior_root != root_entry[0] or not (out_dir / "catalog.json").exists():
        writer.write("catalog.json", root)
        written += 1
    manifest_path = out_dir / "manifest.json"
    if not same_content(manifest_path, manifest):
        writer.overwrite("manifest.json", manifest)  # ~190 MB at 800K items: a new file's pages cost 0.6 s
        written += 1
    failed_path = out_dir / "failed.ndjson"
    if failures:
        writer.write("failed.ndjson", b"".join(canonical_json(f) + b"\n" for f in failures))
    else:
        failed_path.unlink(missing_ok=True)
    report = {"unit": "catalog", "catalog": cat.id, "files_written": written, "failed": len(failures), "removed_collections": removed, "items_deleted": removed_items}
    catalogs.end_root(con, cat.id, *root_entry)
    validator = open_validator(project) if options.validate else None
    if validator is not None:
        counts, run = validate_catalog(project, con, cat, options.jobs, validator)
        report["validation"] = counts
        report["validation_report"] = run.to_json()
    with st.Transaction(con):
        catalogs.save_catalog_input(con, cat.id, catalog_input_digest(project, con, cat, options.validate, validator))
        save_report(con, options.run_id, f"catalog:{cat.id}", report)
    return report


def remove_catalog_output(project: Project, catalog_id: str) -> None:
    """Forget a catalog entirely: its build directory, cache and state."""
    shutil.rmtree(project.build_dir / catalog_id, ignore_errors=True)
    shutil.rmtree(cache_dir(project, catalog_id), ignore_errors=True)
    shutil.rmtree(fragments_dir(project, catalog_id), ignore_errors=True)
    shutil.rmtree(pieces_root(project, catalog_id), ignore_errors=True)
    st.drop_catalog(st.connect(project.state_dir), catalog_id)


__all__ = ["build_catalog", "remove_catalog_output"]
