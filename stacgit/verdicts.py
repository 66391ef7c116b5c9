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
from concurrent.futures import Executor, ProcessPoolExecutor

import orjson

from stacgit.state import verdicts as stored
from stacgit.hashing import digest_obj
from stacgit.project import CatalogSpec, CollectionSpec, Project
from stacgit.schemas import SchemaStore
from stacgit.validate import DocResult, ValidationReport, Target, Validator, validate_targets


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
    return [sid for sid, urls, fp in stored.schema_sets(con, cat_id) if validator.fingerprint(urls) != fp]


def validation_digest(project: Project, con, cat: CatalogSpec, validator: Validator | None = None) -> str:
    """Part of the catalog task's up-to-date check: the fingerprints of its schema sets now."""
    validator = validator or open_validator(project)
    return digest_obj([[sid, validator.fingerprint(urls)] for sid, urls, _ in stored.schema_sets(con, cat.id)])


def validate_catalog(project: Project, con, cat: CatalogSpec, jobs: int, validator: Validator | None = None) -> tuple[dict, ValidationReport]:
    """Validate what has no current verdict; return this run's counts and the catalog's
    totals, and the report of what this run validated."""
    validator = validator or open_validator(project)
    stale = stale_sets(con, validator, cat.id)
    stored.revalidate_sets(con, cat.id, stale)  # their documents are validated again
    run = _validate_queued(project, con, cat.id, {c.id: c.validate_schemas for c in cat.collections}, validator, jobs)
    totals = stored.status_counts(con, cat.id)
    return {
        "validated": run.checked,
        "revalidated_sets": len(stale),
        "valid": totals.get("valid", 0),
        "invalid": totals.get("invalid", 0),
        "schema_unavailable": totals.get("schema_unavailable", 0),
    }, run


def validate_collection(project: Project, con, coll: CollectionSpec, validator: Validator, executor: Executor | None = None, jobs: int = 1) -> ValidationReport:
    """Validate, in the collection task, the collection's documents (items, collection,
    sub-catalogs) that have no current verdict: collection tasks run beside each other (so in
    this process), unless ``executor`` (a Dask cluster's) takes the work. The catalog task runs
    alone after them all. What this leaves (a schema set whose schemas changed, the root
    catalog) is the catalog task's."""
    return _validate_queued(project, con, coll.catalog_id, {coll.id: coll.validate_schemas}, validator, jobs, under=coll.id, executor=executor)


def _validate_queued(project: Project, con, cat_id: str, extra: dict, validator: Validator, jobs: int, under: str | None = None,
                     executor: Executor | None = None) -> ValidationReport:
    """Validate the queued outputs of a catalog (those under the folder ``under`` only, when
    given) that have no verdict at their sha256, a page at a time; drop the verdicts of
    queued outputs that are gone, and empty the queue of what has its verdict now."""
    # a folder's paths sort between "<folder>/" and "<folder>0" ('0' follows '/')
    lo, hi = (f"{under}/", f"{under}0") if under is not None else ("", None)
    stored.drop_gone(con, cat_id, lo, hi)  # verdicts of deleted outputs
    root = str(project.build_dir / cat_id)
    known = stored.known_sets(con, cat_id)
    run = ValidationReport()
    after = lo
    # fresh processes: forked from this one they would each start with (and count as)
    # everything the build task holds. They start on the first page large enough to need them.
    pool = executor or (ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) if jobs > 1 else None)
    try:
        while True:  # a page of outputs at a time: memory does not grow with the catalog
            todo = stored.queued_page(con, cat_id, after, hi, PAGE)
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
            # a set known already keeps its fingerprint: the catalog task compares it
            stored.save(con, rows, [(cat_id, sid, orjson.dumps(list(urls)).decode(), validator.fingerprint(urls)) for sid, urls in sets.items() if sid not in known])
            known.update(sets)
            if len(todo) < PAGE:  # the last page: no need to scan for another
                break
    finally:
        if pool is not None:
            pool.shutdown()
    stored.dequeue_done(con, cat_id, lo, hi)
    return run


def stored_report(con, catalog_ids: list[str], root_of, failing_only: bool = False, limit: int | None = None) -> ValidationReport:
    """The report of built catalogs from their stored verdicts (no file is read); with
    ``failing_only`` just the documents that are not valid, at most ``limit`` of them."""
    report = ValidationReport()
    left = limit
    for cat_id in catalog_ids:
        root = root_of(cat_id)
        results: dict[tuple, DocResult] = {}  # verdicts repeat: one decoded result per (status, detail)
        more: dict[tuple, int] = {}  # results whose groups have their examples -> documents not added yet
        rows = stored.iter_verdicts(con, cat_id, failing_only)
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
