"""Validation as a build step: every output file is validated once per content.

A verdict is stored per output path with the sha256 it was computed for and the schema set
it used. After the collections of a catalog are built, its catalog task validates exactly the
outputs that have no verdict at their current sha256 (what this build wrote, plus anything a
crashed or ``--no-validate`` build left), and re-validates every document of a schema set whose
schema content changed. It finds them in the ``unvalidated`` queue (outputs written or deleted
since it last looked), so a build that wrote a few files does not scan every output. ``stacgit validate CATALOG`` reads the same verdicts.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import orjson

from stacgit import state as st
from stacgit.hashing import digest_obj
from stacgit.project import CatalogSpec, CollectionSpec, Project
from stacgit.schemas import SchemaStore
from stacgit.validate import DocResult, Report, Target, Validator, validate_targets


PAGE = 20_000
"""Outputs validated (and their verdicts committed) at a time."""


def open_validator(project: Project, online: bool = False) -> Validator:
    """Schema directories: the repository's ``schemas/``, then ``STACGIT_SCHEMA_DIR`` (which
    ``--schema-dir`` extends for the process and its workers)."""
    store = SchemaStore.open(project.root, online=online)
    return Validator(store, project.root)


def set_id(urls: tuple[str, ...] | list[str]) -> str:
    return digest_obj(list(urls))[:16]


def stale_sets(con, validator: Validator, cat_id: str) -> list[str]:
    """Schema sets of this catalog whose schema content changed since their documents were
    validated (a schema file was edited, added to a schema directory, or went missing)."""
    out = []
    for sid, urls, fp in con.execute("SELECT set_id, urls, fingerprint FROM schema_sets WHERE catalog=?", (cat_id,)).fetchall():
        if validator.fingerprint(orjson.loads(urls)) != fp:
            out.append(sid)
    return out


def validation_digest(project: Project, con, cat: CatalogSpec, validator: Validator | None = None) -> str:
    """Part of the catalog task's up-to-date check: the fingerprints of its schema sets now."""
    validator = validator or open_validator(project)
    rows = con.execute("SELECT set_id, urls FROM schema_sets WHERE catalog=? ORDER BY set_id", (cat.id,)).fetchall()
    return digest_obj([[sid, validator.fingerprint(orjson.loads(urls))] for sid, urls in rows])


def validate_catalog(project: Project, con, cat: CatalogSpec, jobs: int, validator: Validator | None = None) -> tuple[dict, Report]:
    """Validate what has no current verdict; return this run's counts and the catalog's
    totals, and the report of what this run validated."""
    validator = validator or open_validator(project)
    stale = stale_sets(con, validator, cat.id)
    with st.Transaction(con):
        for sid in stale:  # their documents are validated again
            con.execute("INSERT OR IGNORE INTO unvalidated SELECT catalog, path FROM verdicts WHERE catalog=? AND set_id=?", (cat.id, sid))
            con.execute("DELETE FROM verdicts WHERE catalog=? AND set_id=?", (cat.id, sid))
            con.execute("DELETE FROM schema_sets WHERE catalog=? AND set_id=?", (cat.id, sid))
    run = _validate_queued(project, con, cat.id, {c.id: c.validate_schemas for c in cat.collections}, validator, jobs)
    totals = dict(con.execute("SELECT status, COUNT(*) FROM verdicts WHERE catalog=? GROUP BY status", (cat.id,)).fetchall())
    return {
        "validated": run.checked,
        "revalidated_sets": len(stale),
        "valid": totals.get("valid", 0),
        "invalid": totals.get("invalid", 0),
        "schema_unavailable": totals.get("schema_unavailable", 0),
    }, run


def validate_collection(project: Project, con, coll: CollectionSpec, validator: Validator) -> Report:
    """Validate, in the collection task, the collection's documents (items, collection,
    sub-catalogs) that have no current verdict: collection tasks run beside each other, the
    catalog task runs alone after them all. What this leaves (a schema set whose schemas
    changed, the root catalog) is the catalog task's."""
    return _validate_queued(project, con, coll.catalog_id, {coll.id: coll.validate_schemas}, validator, 1, under=coll.id)


def _validate_queued(project: Project, con, cat_id: str, extra: dict, validator: Validator, jobs: int, under: str | None = None) -> Report:
    """Validate the queued outputs of a catalog (those under the folder ``under`` only, when
    given) that have no verdict at their sha256, a page at a time; drop the verdicts of
    queued outputs that are gone, and empty the queue of what has its verdict now."""
    # a folder's paths sort between "<folder>/" and "<folder>0" ('0' follows '/')
    lo, hi = (f"{under}/", f"{under}0") if under is not None else ("", None)
    within = "u.path > ?" + (" AND u.path < ?" if hi is not None else "")
    bounds = (lo, hi) if hi is not None else (lo,)
    with st.Transaction(con):
        con.execute(  # verdicts of deleted outputs
            "DELETE FROM verdicts WHERE catalog=? AND path IN (SELECT u.path FROM unvalidated u WHERE u.catalog=? AND " + within + " AND NOT EXISTS "
            "(SELECT 1 FROM outputs o WHERE o.catalog=u.catalog AND o.path=u.path AND o.kind IN " + st.STAC_KINDS + "))",
            (cat_id, cat_id, *bounds),
        )
    root = str(project.build_dir / cat_id)
    known = {r[0] for r in con.execute("SELECT set_id FROM schema_sets WHERE catalog=?", (cat_id,))}
    run = Report()
    after = lo
    # fresh processes: forked from this one they would each start with (and count as)
    # everything the build task holds. They start on the first page large enough to need them.
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else None
    try:
        while True:  # a page of outputs at a time: memory does not grow with the catalog
            todo = con.execute(
                """SELECT o.path, o.collection, o.item_id, o.sha256 FROM unvalidated u
                   JOIN outputs o ON o.catalog = u.catalog AND o.path = u.path
                   LEFT JOIN verdicts v ON v.catalog = o.catalog AND v.path = o.path AND v.sha256 = o.sha256
                   WHERE u.catalog = ? AND o.kind IN """ + st.STAC_KINDS + """ AND v.path IS NULL AND """ + within + """
                   ORDER BY u.path LIMIT ?""",
                (cat_id, after, *bounds[1:], PAGE),
            ).fetchall()
            if not todo:
                break
            after = todo[-1][0]
            targets = [Target(os.path.join(root, path), path, root, extra.get(coll, ())) for path, coll, _, _ in todo]
            # item ids are unique per collection by construction (the build plan checks them)
            part, kept = validate_targets(validator, targets, jobs, keep=True, identities=False, pool=pool)
            run.merge(part)
            by_file = {k[0]: k for k in kept}
            rows, sets = [], {}
            for (path, coll, item_id, sha), target in zip(todo, targets):
                got = by_file.get(target.file)
                if got is None:  # the file vanished between the build and here: no verdict
                    continue
                _, status, detail, urls = got
                sid = set_id(urls)
                sets[sid] = urls
                rows.append((cat_id, path, coll, item_id, sha, sid, status, detail))
            with st.Transaction(con):
                con.executemany("INSERT OR REPLACE INTO verdicts VALUES (?,?,?,?,?,?,?,?)", rows)
                con.executemany(  # a set known already keeps its fingerprint: the catalog task compares it
                    "INSERT OR IGNORE INTO schema_sets VALUES (?,?,?,?)",
                    [(cat_id, sid, orjson.dumps(list(urls)).decode(), validator.fingerprint(urls)) for sid, urls in sets.items() if sid not in known],
                )
            known.update(sets)
            if len(todo) < PAGE:  # the last page: no need to scan for another
                break
    finally:
        if pool is not None:
            pool.shutdown()
    with st.Transaction(con):  # what has its verdict, or is gone, leaves the queue
        con.execute(
            """DELETE FROM unvalidated WHERE catalog = ? AND path IN (SELECT u.path FROM unvalidated u
                 LEFT JOIN outputs o ON o.catalog = u.catalog AND o.path = u.path AND o.kind IN """ + st.STAC_KINDS + """
                 LEFT JOIN verdicts v ON v.catalog = o.catalog AND v.path = o.path AND v.sha256 = o.sha256
                WHERE u.catalog = ? AND """ + within + """ AND (o.path IS NULL OR v.path IS NOT NULL))""",
            (cat_id, cat_id, *bounds),
        )
    return run


def stored_report(con, catalog_ids: list[str], root_of, failing_only: bool = False, limit: int | None = None) -> Report:
    """The report of built catalogs from their stored verdicts (no file is read); with
    ``failing_only`` just the documents that are not valid, at most ``limit`` of them."""
    report = Report()
    where = " AND status != 'valid'" if failing_only else ""
    left = limit
    for cat_id in catalog_ids:
        root = root_of(cat_id)
        results: dict[tuple, DocResult] = {}  # verdicts repeat: one decoded result per (status, detail)
        more: dict[tuple, int] = {}  # results whose groups have their examples -> documents not added yet
        rows = con.execute(f"SELECT path, item_id, status, detail FROM verdicts WHERE catalog=?{where} ORDER BY path", (cat_id,))
        for path, item_id, status, detail in itertools.islice(rows, left):
            key = (status, detail)
            if key in more:
                more[key] += 1
                continue
            result = results.get(key)
            if result is None:
                result = results[key] = DocResult.from_row(status, detail)
            report.add(item_id, f"{root}/{path}", result)
            if report.examples_full(result):
                more[key] = 0
        rows.close()
        for key, n in more.items():
            report.add_many(results[key], n)
        if limit is not None:
            left = limit - report.checked
            if left <= 0:
                break
    return report
