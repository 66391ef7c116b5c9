"""Command line. Each command parses, calls one library function, renders. No logic here.

Exit codes: 0 ok; 1 failures, stale or invalid; 2 usage or configuration error.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson

from stacgit.errors import StacgitError


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
def build(repo: str, strict: bool, full: bool, only: tuple[str, ...], jobs: int | None, as_json: bool) -> None:
    """Build the catalogs incrementally into build/<catalog>/."""
    from stacgit.runner import format_summary, run_build

    try:
        summary = run_build(_project(repo), strict=strict, full=full, only=only, jobs=jobs, progress=not as_json)
    except StacgitError as exc:
        _fail(exc)
    if as_json:
        click.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        for e in summary["errors"]:
            click.echo(f"error: {e['message']}", err=True)
    else:
        for line in format_summary(summary).splitlines():
            click.echo(line, err=line.startswith("error:"))
    sys.exit(1 if summary["errors"] or summary["items"]["failed"] else 0)


@cli.command()
@click.option("-C", "--repo", default=".", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print stale units as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; the exit code says whether anything is stale.")
def status(repo: str, as_json: bool, quiet: bool) -> None:
    """List stale build units with the reason; exit 1 when anything is stale."""
    from stacgit.plan import compute_status

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


def main() -> None:
    cli()
