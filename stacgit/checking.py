"""``stacgit validate`` and ``stacgit schemas pull``: validation of built catalogs (through
their stored verdicts) or of any STAC files, and pinning schemas into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from stacgit import state as st
from stacgit.errors import ConfigError, StacgitError
from stacgit.hashing import pretty_json, sha256_file
from stacgit.plan import extension_uses, get_mapping
from stacgit.project import Project
from stacgit.schemas import SchemaStore, SchemaUnavailable, pull
from stacgit.validate import Report, Validator, collect_targets, core_schema_url, validate_targets
from stacgit.verdicts import stored_report, validate_catalog

LOCK_FILE = "schemas.lock.json"


def add_schema_dirs(dirs: tuple[str, ...]) -> None:
    """``--schema-dir``: searched before ``STACGIT_SCHEMA_DIR``, in this process and its workers."""
    if not dirs:
        return
    for d in dirs:
        if not Path(d).is_dir():
            raise ConfigError(f"--schema-dir {d}: not a directory")
    current = os.environ.get("STACGIT_SCHEMA_DIR", "")
    os.environ["STACGIT_SCHEMA_DIR"] = os.pathsep.join([str(Path(d).resolve()) for d in dirs] + ([current] if current else []))


def validate_paths(paths: list[str], project: Project | None, online: bool, jobs: int) -> Report:
    """Any STAC JSON / NDJSON files or directories (no state, nothing cached)."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise StacgitError(f"{missing[0]}: no such file, directory or catalog")
    store = SchemaStore.open(project.root if project else None, online=online)
    report, _ = validate_targets(Validator(store, project.root if project else None), collect_targets(paths, jobs), jobs)
    return report


def validate_built(project: Project, catalog_ids: list[str], jobs: int) -> Report:
    """Catalogs of the repository as built: documents without a current verdict (a
    ``--no-validate`` build, changed schemas) are validated now, then every stored verdict is
    reported. Offline, with the same schema store as the build."""
    from stacgit.runner import acquire_lock, release_lock

    con = st.connect(project.state_dir)
    acquire_lock(project)
    try:
        for cat_id in catalog_ids:
            if not (project.build_dir / cat_id / "catalog.json").is_file():
                raise StacgitError(f"catalog '{cat_id}' is not built yet: run `stacgit build` first")
            validate_catalog(project, con, project.catalog(cat_id), jobs)
    finally:
        release_lock(project)
    rel = os.path.relpath(project.build_dir, Path.cwd())
    return stored_report(con, catalog_ids, lambda c: f"{rel}/{c}")


def run_validate(targets: tuple[str, ...], repo: str, online: bool, jobs: int) -> Report:
    project = None
    try:
        project = Project.discover(repo)
    except StacgitError:
        if not targets:
            raise
    if not targets:
        return validate_built(project, sorted(project.catalogs), jobs)  # type: ignore[union-attr]
    catalogs = [t for t in targets if project is not None and t in project.catalogs and not Path(t).exists()]
    paths = [t for t in targets if t not in catalogs]
    report = Report()
    if catalogs:
        report.merge(validate_built(project, catalogs, jobs))  # type: ignore[arg-type]
    if paths:
        report.merge(validate_paths(paths, project, online, jobs))
    return report


# --------------------------------------------------------------------------- schemas pull


def referenced_schemas(project: Project) -> set[str]:
    """Every schema URL the repository's catalogs use: core, mappings' and extensions'
    ``stac_extensions``, custom collection schemas, and what earlier builds validated against."""
    urls = {core_schema_url({"type": t, "stac_version": "1.1.0"}) for t in ("Feature", "Collection", "Catalog")}
    for coll in project.iter_collections():
        spec = get_mapping(project, coll)
        urls |= set(spec.data.get("stac_extensions") or [])
        for use in extension_uses(coll):
            urls |= set(use.ext.uris(use.raw))
        urls |= {u for u in coll.validate_schemas if u.startswith(("https://", "http://"))}
    con = st.connect(project.state_dir)
    for (row,) in con.execute("SELECT urls FROM schema_sets"):
        urls |= {u for u in orjson.loads(row) if u.startswith(("https://", "http://"))}
    return {u for u in urls if u}


def pull_schemas(project: Project, dest: Path | None = None, online: bool = True) -> dict:
    """Copy every referenced schema and its ``$ref``s into ``schemas/`` (from schema dirs,
    the cache, or the network) and write ``schemas.lock.json`` (URL -> sha256)."""
    dest = dest or project.root / "schemas"
    store = SchemaStore.open(project.root, online=online)
    urls = referenced_schemas(project)
    # pystac bundles the 1.1.0 core: nothing to pin for those
    wanted = []
    for u in sorted(urls):
        try:
            store.get(u)
            if store.origin(u) == "pystac":
                continue
        except SchemaUnavailable:
            pass
        wanted.append(u)
    written, failed = pull(store, wanted, dest)
    lock = {}
    for path in sorted(dest.rglob("*")):
        if path.is_file() and path.name != LOCK_FILE:
            rel = path.relative_to(dest).as_posix()
            lock["https://" + rel] = sha256_file(str(path))
    if lock:
        (dest / LOCK_FILE).write_bytes(pretty_json(lock))
    return {
        "referenced": sorted(urls),
        "written": written,
        "pinned": len(lock),
        "failed": [{"url": f.url, "why": f.why} for f in failed],
        "dest": str(dest),
    }


def format_report(report: Report, max_groups: int = 20) -> str:
    data = report.to_json()
    lines = [
        f"checked {data['checked']}: valid {data['valid']}, invalid {data['invalid']}, schema unavailable {data['schema_unavailable']}"
        + (f", warnings {report.warnings}" if report.warnings else "")
    ]
    for kind in ("errors", "warnings"):
        groups = data[kind]
        for g in groups[:max_groups]:
            lines.append(f"{kind[:-1]}: {g['count']} x {g['message']}  [{g['schema']}]")
            for ex in g["examples"]:
                lines.append(f"    {ex['path']}  {ex['pointer'] or '/'}" + (f"  (id {ex['id']})" if ex.get("id") else ""))
        if len(groups) > max_groups:
            lines.append(f"... {len(groups) - max_groups} more {kind} groups (--json lists them all)")
    for u in data["unavailable_schemas"]:
        lines.append(f"schema unavailable: {u['url']} ({u['documents']} documents): {u['why']}")
    if data["unavailable_schemas"]:
        lines.append("hint: `stacgit schemas pull` (online) pins schemas into schemas/; or set STACGIT_SCHEMA_DIR / --schema-dir")
    return "\n".join(lines)

