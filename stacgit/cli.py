"""Command line. Each command parses, calls one library function, renders. No logic here.

Exit codes: 0 ok; 1 failures, stale or invalid; 2 usage or configuration error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from stacgit.errors import ConfigError, StacgitError


def _fail(exc: StacgitError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _project(path: str):
    from stacgit.project import Project

    return Project.discover(path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stacgit")
def cli() -> None:
    """STAC catalogs managed as code: build, check and publish catalogs from a git repository."""


@cli.command()
@click.option("-C", "--repo", default=".", show_default=True, help="Catalog repository (or a folder inside it).")
@click.option("--strict", is_flag=True, help="A record that fails to map fails the build.")
@click.option("--full", is_flag=True, help="Forget build state and rebuild everything.")
@click.option("--only", multiple=True, metavar="ID", help="Build only this catalog, collection or item id (repeatable).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), help="Parallel processes (default: CPU count).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-validate", "no_validate", is_flag=True, help="Skip validating what the build wrote (stacgit validate catches up later).")
@click.option("--schema-dir", "schema_dirs", multiple=True, metavar="DIR", help="Schema directory (<host>/<path> layout), searched before STACGIT_SCHEMA_DIR.")
@click.option("--scheduler", metavar="ADDRESS", envvar="STACGIT_SCHEDULER",
              help="Run the shard work on a Dask cluster: tcp://host:8786, or 'local' for a LocalCluster of --jobs workers (needs stacgit[dask]).")
def build(repo: str, strict: bool, full: bool, only: tuple[str, ...], jobs: int | None, as_json: bool, no_validate: bool, schema_dirs: tuple[str, ...],
          scheduler: str | None) -> None:
    """Build the catalogs incrementally into build/<catalog>/, validating what it wrote.

    Invalid documents fail the build (exit 1) but stay written; with --strict, documents whose
    schema is unavailable fail it too."""
    from stacgit.checking import add_schema_dirs
    from stacgit.engine.report import format_summary
    from stacgit.executors import scheduler_from
    from stacgit.runner import run_build

    try:
        add_schema_dirs(schema_dirs)
        summary = run_build(_project(repo), strict=strict, full=full, only=only, jobs=jobs, progress=not as_json, validate=not no_validate,
                            scheduler=scheduler_from(scheduler))
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        click.echo(orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2).decode())
        for e in summary.errors:
            click.echo(f"error: {e['message']}", err=True)
    else:
        for line in format_summary(summary).splitlines():
            click.echo(line, err=line.startswith("error:"))
    sys.exit(0 if summary.ok else 1)


@cli.command()
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print stale units as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit code says whether anything is stale.")
def status(repo: str, as_json: bool, quiet: bool) -> None:
    """List stale build units with the reason; exit 1 when anything is stale."""
    from stacgit.runner import compute_status

    try:
        stale = compute_status(_project(repo))
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        click.echo(orjson.dumps({"stale": [s.to_dict() for s in stale]}, option=orjson.OPT_INDENT_2).decode())
    elif not quiet:
        for s in stale:
            click.echo(f"{s.reason.value:16} {s.unit}" + (f"  ({s.detail})" if s.detail else ""))
        click.echo("up to date" if not stale else f"{len(stale)} stale unit(s)")
    sys.exit(1 if stale else 0)


@cli.command(name="ls")
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def ls_cmd(repo: str, as_json: bool) -> None:
    """List catalogs and collections with their item counts (as of the last build)."""
    from stacgit.inventory import list_collections

    try:
        rows = list_collections(_project(repo))
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("catalog", "collection", "items", "sources", "title", box=None)
    for r in rows:
        table.add_row(r["catalog"], r["collection"], str(r["items"]), str(r["sources"]), r["title"])
    Console().print(table)


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def init(directory: Path) -> None:
    """Create a new catalog repository in DIRECTORY with an example catalog."""
    from stacgit.scaffold import init_repo

    try:
        written = init_repo(directory)
    except StacgitError as exc:
        _fail(exc)
    for path in written:
        click.echo(f"created {path}")
    click.echo(f"next: cd {directory} && stacgit build")


@cli.command()
@click.argument("catalog", required=False)
@click.argument("collection", required=False)
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--all", "all_", is_flag=True, help="Refresh every remote source (the default without CATALOG).")
@click.option("--json", "as_json", is_flag=True)
def snapshot(catalog: str | None, collection: str | None, repo: str, all_: bool, as_json: bool) -> None:
    """Fetch remote sources (STAC APIs) into catalogs/<c>/snapshots/; exit 1 if any failed."""
    from stacgit.snapshot import format_summary, run_snapshot

    if all_ and catalog:
        _fail(ConfigError("--all refreshes every source; do not name a catalog"))
    try:
        result = run_snapshot(_project(repo), catalog, collection)
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        _print_json(result.to_json())
    else:
        for line, to_stderr in format_summary(result):
            click.echo(line, err=to_stderr)
    sys.exit(0 if result.complete else 1)


@cli.command()
@click.argument("url")
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--ids", multiple=True, metavar="GLOB", help="Collection id glob (repeatable).")
@click.option("--provider", help="Provider name (substring, case-insensitive).")
@click.option("--datetime", "datetime_range", metavar="RANGE", help="Keep collections whose temporal extent overlaps START/END.")
@click.option("--bbox", metavar="W,S,E,N", help="Keep collections whose spatial extent overlaps this box.")
@click.option("--count", is_flag=True, help="Ask the API for each collection's item count (one request each).")
@click.option("--add-to", "add_to", metavar="CATALOG", help="Append the collections found to catalogs/CATALOG/catalog.yaml.")
@click.option("--json", "as_json", is_flag=True)
def discover(url: str, repo: str, ids: tuple[str, ...], provider: str | None, datetime_range: str | None, bbox: str | None, count: bool, add_to: str | None, as_json: bool) -> None:
    """List a STAC API's collections (filtered); optionally add them to a catalog."""
    from stacgit.discover import add_to_catalog, discover as run

    try:
        box = None
        if bbox:
            try:
                box = [float(v) for v in bbox.split(",")]
            except ValueError:
                raise ConfigError(f"--bbox {bbox!r}: expected W,S,E,N numbers") from None
            if len(box) != 4:
                raise ConfigError(f"--bbox {bbox!r}: expected 4 numbers")
        rows = run(url, ids, provider, datetime_range, box, count)
        added = add_to_catalog(_project(repo), add_to, url, rows) if add_to else []
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        _print_json({"collections": rows, "added": added})
        return
    for r in rows:
        items = f"{r['items']} items" if r["items"] is not None else ""
        click.echo(f"{r['id']}\t{r['title']}\t{r['interval'][0] or '..'}/{r['interval'][1] or '..'}\t{','.join(str(v) for v in r['bbox'])}\t{items}")
    for cid in added:
        click.echo(f"added {cid} to catalogs/{add_to}/catalog.yaml")


@cli.group()
def patch() -> None:
    """Write, dry-run and list patch specs (patches/*.yaml). Never touches build output."""


def _print_json(data) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@patch.command(name="new")
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--collection", "collection", required=True, help="catalog/collection, or a collection id unique across catalogs.")
@click.option("--ids", multiple=True, help="Item ids (repeatable, or comma-separated).")
@click.option("--where", help="CQL2 text selecting items (as mapped).")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help="Set a field: properties.x=12 or /properties/x=12 (YAML value).")
@click.option("--remove", "removes", multiple=True, metavar="PATH", help="Remove a field.")
@click.option("-m", "--message", "description", help="Description for reviewers.")
def patch_new(repo: str, collection: str, ids: tuple[str, ...], where: str | None, sets: tuple[str, ...], removes: tuple[str, ...], description: str | None) -> None:
    """Write a new update patch file."""
    from stacgit.authoring import write_patch

    try:
        path = write_patch(_project(repo), collection, _split_ids(ids), where, list(sets), list(removes), description)
    except StacgitError as exc:
        _fail(exc)
    click.echo(f"wrote {path}")


@patch.command(name="delete")
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--collection", "collection", required=True)
@click.option("--ids", multiple=True, help="Item ids (repeatable, or comma-separated).")
@click.option("--where", help="CQL2 text selecting items (as mapped).")
@click.option("-m", "--message", "description", help="Description for reviewers.")
def patch_delete(repo: str, collection: str, ids: tuple[str, ...], where: str | None, description: str | None) -> None:
    """Write a new delete patch file."""
    from stacgit.authoring import write_patch

    try:
        path = write_patch(_project(repo), collection, _split_ids(ids), where, [], [], description, delete=True)
    except StacgitError as exc:
        _fail(exc)
    click.echo(f"wrote {path}")


def _split_ids(ids: tuple[str, ...]) -> list[str]:
    return [i.strip() for chunk in ids for i in chunk.split(",") if i.strip()]


@patch.command(name="check")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def patch_check(files: tuple[Path, ...], repo: str, as_json: bool) -> None:
    """Dry-run patches (default: all) against the current build; exit 1 if any would fail."""
    from stacgit.authoring import check_patches

    try:
        result = check_patches(_project(repo), list(files) or None)
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        _print_json(result)
    else:
        for key, r in result["patches"].items():
            click.echo(f"{key}: {r['description']}")
            click.echo(f"  matched {r['matched']} item(s)" + (f", deleted {r['deleted']}" if r["deleted"] else ""))
            for ch in r["changes"]:
                ops = "; ".join(f"{o['op']} {o['path']}" + (f" = {orjson.dumps(o['value']).decode()[:60]}" if "value" in o else "") for o in ch["patch"])
                click.echo(f"  {ch['item_id']}: {ops or 'no change'}")
            for f in r["failed"]:
                click.echo(f"  FAILED {f['item_id']}: op {f['op']}: {f['reason']}")
            if r["unmatched_ids"]:
                click.echo(f"  NO ITEM for id(s): {', '.join(r['unmatched_ids'])}")
    sys.exit(0 if result["ok"] else 1)


@patch.command(name="ls")
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def patch_ls(repo: str, as_json: bool) -> None:
    """List patches: target, selector, action, commit time, counts from the last build."""
    from stacgit.authoring import list_patches

    try:
        rows = list_patches(_project(repo))
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        click.echo(f"{r['patch']}  {r['target']}  {r['select']}  {r['action']}  committed {r['committed']}")
        click.echo(f"    {r['description']}  (matched {r['matched']}, patched {r['patched']}, deleted {r['deleted']}, failed {r['failed']})")


@cli.command()
@click.argument("targets", nargs=-1)
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--strict", is_flag=True, help="Schema unavailable and lint warnings fail too.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option("--schema-dir", "schema_dirs", multiple=True, metavar="DIR", help="Schema directory (<host>/<path> layout).")
@click.option("--offline", is_flag=True, envvar="STACGIT_OFFLINE", help="Never download schemas (files and directories only; built catalogs never do).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), help="Parallel processes (default: twice the CPU count, at most 8: validation waits on file reads).")
@click.option("--schema-only", "schema_only", is_flag=True, help="Files and directories: JSON schemas and extension checks only, no lint.")
def validate(targets: tuple[str, ...], repo: str, strict: bool, as_json: bool, schema_dirs: tuple[str, ...], offline: bool, jobs: int | None, schema_only: bool) -> None:
    """Validate built catalogs (default: all; or CATALOG ids) or any STAC JSON/NDJSON files and
    directories: core + declared extensions + custom schemas, extension checks and lint."""
    from stacgit.checking import add_schema_dirs, format_report, run_validate
    from stacgit.runner import default_jobs

    try:
        add_schema_dirs(schema_dirs)
        report = run_validate(targets, repo, online=not offline, jobs=jobs or min(2 * default_jobs(), 8), schema_only=schema_only)
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        _print_json(report.to_json())
    else:
        click.echo(format_report(report))
    sys.exit(0 if report.ok(strict) else 1)


@cli.group()
def schemas() -> None:
    """Schemas the catalogs validate against."""


@schemas.command(name="pull")
@click.argument("documents", nargs=-1, type=click.Path(path_type=Path))
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--schema-dir", "schema_dirs", multiple=True, metavar="DIR", help="Copy from this schema directory too.")
@click.option("--offline", is_flag=True, envvar="STACGIT_OFFLINE", help="Copy only from schema directories and the cache.")
@click.option("--from", "source", type=click.Path(path_type=Path), metavar="DIR", help="Copy only from this local mirror (<host>/<path> layout; its INDEX.md provenance goes into the lock).")
@click.option("--json", "as_json", is_flag=True)
def schemas_pull(documents: tuple[Path, ...], repo: str, schema_dirs: tuple[str, ...], offline: bool, source: Path | None, as_json: bool) -> None:
    """Copy every schema the catalogs reference (with nested $refs), and those the STAC
    DOCUMENTS given name, into schemas/ and write schemas/schemas.lock.json (URL, sha256,
    origin), so builds and validation run offline against pinned files."""
    from stacgit.checking import add_schema_dirs, pull_schemas

    try:
        add_schema_dirs(schema_dirs)
        result = pull_schemas(_project(repo), online=not offline, source=source, documents=list(documents))
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        _print_json(result)
    else:
        click.echo(f"{len(result['referenced'])} schemas referenced; {len(result['written'])} written, {result['pinned']} pinned in {result['dest']}")
        for f in result["failed"]:
            click.echo(f"error: {f['url']}: {f['why']}", err=True)
    sys.exit(1 if result["failed"] else 0)


@cli.command()
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--base", metavar="GIT_REF", help="Compare with the build of this ref (built in a worktree under .stacgit/diff-base).")
@click.option("--old", "old", type=click.Path(file_okay=False, path_type=Path), metavar="BUILD_DIR", help="Compare with this build directory.")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "geojson"]), default="md", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), metavar="DIR", help="Also write summary.md, summary.json and changes.geojson here.")
@click.option("--exit-code", "exit_code", is_flag=True, help="Exit 1 when there are changes.")
@click.option("--as-is", "as_is", is_flag=True, help="Compare build/ as it is, even when it is stale (by default a stale build is brought up to date first).")
def diff(repo: str, base: str | None, old: Path | None, fmt: str, out: Path | None, exit_code: bool, as_is: bool) -> None:
    """Items added, modified and deleted between the working tree and another build."""
    from stacgit.diffing import run_diff, summary_markdown, write_outputs

    try:
        data, geo = run_diff(_project(repo), base=base, old=old, as_is=as_is)
    except StacgitError as exc:
        _fail(exc)
    if out is not None:
        write_outputs(out, data, geo)
    if fmt == "md":
        click.echo(summary_markdown(data, geo), nl=False)
    else:
        _print_json(data if fmt == "json" else geo)
    changed = any(data["totals"].values()) or any(c["collection_changed"] for c in data["collections"].values())
    sys.exit(1 if exit_code and changed else 0)


@cli.command()
@click.argument("catalog", required=False)
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--to", "to", required=True, metavar="URL", help="s3://bucket[/prefix] or file:///path (each catalog goes to <URL>/<catalog-id>/), or a pgstac database: postgresql://... (or 'pgstac': PGSTAC_DSN or libpq's PG* variables).")
@click.option("--endpoint-url", metavar="URL", help="S3-compatible endpoint (MinIO, R2, moto...); AWS_ENDPOINT_URL_S3 works too.")
@click.option("--base-url", metavar="URL", help="Public URL of --to: links become absolute under <URL>/<catalog-id>/ (default: catalog.yaml publish.base_url).")
@click.option("--prune", is_flag=True, help="Delete what the build no longer has, after the new root is live.")
@click.option("--dry-run", "dry_run", is_flag=True, help="Say what would be uploaded and deleted; change nothing.")
@click.option("--force", is_flag=True, help="Publish over a target someone else published since this build's base.")
@click.option("--verify", is_flag=True, help="Audit the target (LIST + HEAD) against the manifest and repair drift.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=16, show_default=True, help="Parallel uploads.")
@click.option("--allow-failures", "allow_failures", is_flag=True, help="Publish a build that has failed records (without them).")
@click.option("--allow-deletes", "allow_deletes", is_flag=True, help="Publish a build that deletes a large share of a collection (see publish: in catalog.yaml).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def publish(catalog: str | None, repo: str, to: str, endpoint_url: str | None, base_url: str | None, prune: bool, dry_run: bool, force: bool, verify: bool, concurrency: int, allow_failures: bool, allow_deletes: bool, as_json: bool) -> None:
    """Upload what changed since the last publish: items and partitions first, the root last.

    Credentials come from the standard AWS chain (environment, ~/.aws, roles) and are never
    printed. Exit 1 when the publish failed or was refused; rerunning finishes an interrupted one."""
    from stacgit.publishing import DatabaseReport, format_summary, run_publish

    try:
        summary = run_publish(
            _project(repo), to, catalog, endpoint_url=endpoint_url, base_url=base_url, prune=prune, dry_run=dry_run,
            force=force, verify=verify, concurrency=concurrency, progress=not as_json, allow_failures=allow_failures, allow_deletes=allow_deletes,
        )
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        _print_json(summary.to_json())
    else:
        click.echo(summary.format() if isinstance(summary, DatabaseReport) else format_summary(summary))


@cli.command()
@click.argument("catalog", required=False)
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=7822, show_default=True)
def serve(catalog: str | None, repo: str, port: int) -> None:
    """A STAC API on 127.0.0.1 over the build (rustac serve), to try clients before publishing."""
    from stacgit.serve import serve as run_serve

    try:
        run_serve(_project(repo), catalog, port)
    except StacgitError as exc:
        _fail(exc)


def main() -> None:
    cli()
