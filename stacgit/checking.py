"""``stacgit validate`` and ``stacgit schemas pull``: validation of built catalogs (through
their stored verdicts) or of any STAC files, and pinning schemas into the repository."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from stacgit.state import outputs
from stacgit import state as st
from stacgit.errors import ConfigError, StacgitError
from stacgit.hashing import pretty_json, sha256_file
from stacgit.plan import extension_uses, get_mapping
from stacgit.project import Project
from stacgit.schemas import SchemaStore, SchemaUnavailable, pull
from stacgit.validate import ValidationReport, Validator, collect_targets, core_schema_url, read_documents, validate_targets
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


def validate_paths(paths: list[str], project: Project | None, online: bool, jobs: int, schema_only: bool = False) -> ValidationReport:
    """Any STAC JSON / NDJSON files or directories (no state, nothing cached). A directory with
    a catalog.json or collection.json at its top is a tree (links are checked against it);
    any other holds loose documents."""
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise StacgitError(f"{missing[0]}: no such file, directory or catalog")
    store = SchemaStore.open(project.root if project else None, online=online)
    validator = Validator(store, project.root if project else None, lint_enabled=not schema_only)
    report, _ = validate_targets(validator, collect_targets(paths, jobs), jobs, identities=not schema_only)
    return report


def validate_built(project: Project, catalog_ids: list[str], jobs: int) -> ValidationReport:
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


def run_validate(targets: tuple[str, ...], repo: str, online: bool, jobs: int, schema_only: bool = False) -> ValidationReport:
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
    report = ValidationReport()
    if catalogs:
        report.merge(validate_built(project, catalogs, jobs))  # type: ignore[arg-type]
    if paths:
        report.merge(validate_paths(paths, project, online, jobs, schema_only))
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
    urls |= {u for u in outputs.schema_urls(con) if u.startswith(("https://", "http://"))}
    return {u for u in urls if u}


def document_schemas(paths: list[Path]) -> set[str]:
    """The schema URLs STAC documents under ``paths`` (files or directories) name: their core
    schema and their ``stac_extensions``."""
    urls: set[str] = set()
    for target in collect_targets([str(p) for p in paths]):
        for _loc, doc, _error in read_documents(target.file):  # JSON, FeatureCollections, NDJSON
            if not isinstance(doc, dict):
                continue
            core = core_schema_url(doc)
            urls |= {core} if core else set()
            urls |= {u for u in doc.get("stac_extensions") or [] if isinstance(u, str) and u.startswith(("https://", "http://"))}
    return urls


def pull_schemas(project: Project, dest: Path | None = None, online: bool = True, source: Path | None = None, documents: list[Path] = ()) -> dict:
    """Copy every referenced schema and its ``$ref``s into ``schemas/`` (from ``source``, a
    local mirror; else from schema dirs, the cache, or the network) and write
    ``schemas.lock.json``: URL -> sha256 and where the file came from.

    pystac's bundled STAC 1.1.0 core needs no pin. A file already pinned keeps its recorded
    origin while its bytes are unchanged."""
    dest = dest or project.root / "schemas"
    if source is not None:
        if not source.is_dir():
            raise ConfigError(f"--from {source}: not a directory")
        store = SchemaStore(dirs=[source], online=False)
    else:
        store = SchemaStore.open(project.root, online=online)
    missing = [p for p in documents if not p.exists()]
    if missing:
        raise ConfigError(f"{missing[0]}: no such file or directory")
    urls = referenced_schemas(project) | document_schemas(list(documents))
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
    old = read_lock(dest)
    provenance = _mirror_provenance(source) if source is not None else {}
    lock = {}
    for path in sorted(dest.rglob("*")):
        if not path.is_file() or path.name == LOCK_FILE:
            continue
        url = "https://" + path.relative_to(dest).as_posix()
        sha = sha256_file(str(path))
        if url in written:
            origin = store.origin(url)
            origin = url if origin == "network" else provenance.get(url) or f"copied from a local schema mirror ({Path(origin).name})"
        else:  # pinned before: its origin holds while its bytes do
            known = old.get(url, {})
            origin = (known.get("sha256") == sha and known.get("origin")) or "added to schemas/ by hand"
        lock[url] = {"origin": origin, "sha256": sha}
    if lock:
        (dest / LOCK_FILE).write_bytes(pretty_json(lock))
    return {
        "referenced": sorted(urls),
        "written": written,
        "pinned": len(lock),
        "failed": [{"url": f.url, "why": f.why} for f in failed],
        "dest": str(dest),
    }


def read_lock(schema_dir: Path) -> dict[str, dict]:
    """``schemas.lock.json`` as URL -> {sha256, origin} (a lock of plain URL -> sha256, as
    earlier versions wrote it, reads as entries without an origin)."""
    path = schema_dir / LOCK_FILE
    if not path.is_file():
        return {}
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    return {u: (e if isinstance(e, dict) else {"sha256": e}) for u, e in data.items()}


def _mirror_provenance(mirror: Path) -> dict[str, str]:
    """Provenance rows of a mirror's ``INDEX.md`` (a Markdown table whose first columns are
    the canonical URL, the ``$id``, the source repository, the commit and the path), as
    ``repository@commit:path`` per URL; empty when the mirror has no such index."""
    index = mirror / "INDEX.md"
    if not index.is_file():
        return {}
    out = {}
    for line in index.read_text(encoding="utf-8").splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) >= 5 and cells[0].startswith("https://"):
            out[cells[0]] = f"{cells[2]}@{cells[3]}:{cells[4]}"
    return out


def format_report(report: ValidationReport, max_groups: int = 20) -> str:
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

