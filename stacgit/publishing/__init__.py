"""``stacgit publish``: put a build on S3 (or a local mirror), uploading only what changed.

What to upload comes from comparing the build's ``manifest.json`` with the manifest of the last
publish, kept in the target at ``<catalog>/.stacgit/manifest.json``; nothing lists the bucket
unless ``--verify`` asks for an audit. Each object carries the sha256 of its bytes in its
metadata, because ETags are not content hashes (LESSONS S3-1, S3-2).

Order (LESSONS S3-5): items, parquet partitions and pgstac files first; then sub-catalogs and
collections, deepest first; then the change feed's index; then the root ``catalog.json``; then,
with ``--prune``, the deletes; the manifest last, with a conditional write. Every phase finishes
before the next starts, so at any moment the live root points at complete content, and a publish
that dies part-way is finished by running it again. (The feed index goes before the root, not
after: the root links it, and on a first publish it would otherwise point at a missing object.)

A target that was last published from a commit outside this build's history is refused unless
``--force`` (someone else published; LESSONS S3-6).

``plan``: what to send and the guards; ``sync``: sending it, resumably.
"""

from __future__ import annotations

import orjson

from stacgit.errors import ConfigError
from stacgit.project import Project
from stacgit.stores import Target, open_store
from stacgit.publishing.plan import (
    CONTENT_TYPES, check_base, check_base_url, check_fresh, check_guards, classify, plan_catalog, render_absolute, stale_units,
)
from stacgit.publishing.pgstac_db import database_dsn, is_database, publish_catalog
from stacgit.publishing.pgstac_plan import DatabaseReport
from stacgit.publishing.report import CatalogPublish, PublishReport, format_summary
from stacgit.publishing.sync import execute, record_file, verify_catalog


def run_publish(
    project: Project,
    to: str,
    catalog: str | None = None,
    *,
    endpoint_url: str | None = None,
    base_url: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
    force: bool = False,
    verify: bool = False,
    concurrency: int = 16,
    progress: bool = True,
    allow_failures: bool = False,
    allow_deletes: bool = False,
) -> PublishReport | DatabaseReport:
    """Publish one catalog or every catalog of the project to ``to`` (``s3://bucket/prefix``
    or ``file:///path``; each catalog goes to ``<to>/<catalog-id>/``; or a pgstac database,
``postgresql://...``, see ``pgstac_db``). Returns what it did."""
    if is_database(to):
        return _publish_database(project, to, catalog, dry_run=dry_run, force=force, verify=verify)
    target = Target.parse(to)
    if endpoint_url and target.scheme != "s3":
        raise ConfigError(f"--endpoint-url applies to s3:// targets, not {to}")
    catalogs = [project.catalog(catalog).id] if catalog else sorted(project.catalogs)
    stale: list | None = None
    record_path = record_file(project, target)
    record = orjson.loads(record_path.read_bytes()) if record_path.exists() else {}
    report = PublishReport(dry_run=dry_run)
    for cat_id in catalogs:
        cat = project.catalog(cat_id)
        if base_url:
            cat_base = check_base_url(base_url, "--base-url").rstrip("/") + "/" + cat_id + "/"
        elif cat.publish.get("base_url"):
            cat_base = check_base_url(cat.publish["base_url"], f"catalogs/{cat_id}/catalog.yaml: publish.base_url")
        else:
            cat_base = None
        store = open_store(target, cat_id, endpoint_url, concurrency)
        plan = plan_catalog(project, cat_id, store, cat_base, force)
        if stale is None:
            stale = stale_units(project)
        check_fresh(stale, cat_id)
        check_base(project, plan, record, force)
        check_guards(project, plan, allow_failures, allow_deletes)
        if verify:
            verify_catalog(plan, concurrency)
        done = CatalogPublish(
            catalog=cat_id, target=store.url, uploaded=len(plan.uploads), unchanged=len(plan.carried),
            deleted=len(plan.deletes) if prune else 0, orphans=0 if prune else len(plan.deletes),
            bytes=sum(e.size for e in plan.uploads), repaired=plan.repaired, warnings=plan.warnings,
        )
        if dry_run:
            done.upload_paths = [e.rel for e in plan.uploads]
            done.delete_paths = plan.deletes if prune else []
            done.generation = (plan.remote or {}).get("generation")
        else:
            doc = execute(project, plan, prune=prune, force=force, concurrency=concurrency, progress=progress)
            done.bytes, done.generation, done.commit = plan.sent_bytes, doc.get("generation"), doc.get("commit")
            record[cat_id] = {"generation": doc.get("generation")}
            record_path.parent.mkdir(parents=True, exist_ok=True)
            record_path.write_bytes(orjson.dumps(record, option=orjson.OPT_SORT_KEYS))
        report.catalogs.append(done)
    return report


def _publish_database(project: Project, to: str, catalog: str | None, *, dry_run: bool, force: bool, verify: bool) -> DatabaseReport:
    import os

    from stacgit import gitinfo

    dsn = database_dsn(to, dict(os.environ))
    catalogs = [project.catalog(catalog).id] if catalog else sorted(project.catalogs)
    stale = stale_units(project)
    commit, _ = gitinfo.head_commit(project.root)
    report = DatabaseReport(dry_run=dry_run)
    for cat_id in catalogs:
        check_fresh(stale, cat_id)
        report.catalogs.append(publish_catalog(project, cat_id, dsn, dry_run=dry_run, force=force, verify=verify, commit=commit))
    return report


__all__ = ["CONTENT_TYPES", "CatalogPublish", "PublishReport", "classify", "execute", "format_summary", "plan_catalog", "render_absolute", "run_publish"]
