"""Shared fixtures: a catalog repository built from this repo's examples in a temp dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
MIRROR = REPO / "schemas"
"""The schemas this repository pins (``stacgit schemas pull --from``; provenance in its lock):
the tests validate offline against them and need nothing beside the checkout."""


@pytest.fixture(autouse=True, scope="session")
def _isolated_schema_env(tmp_path_factory):
    """No user schema cache and no STACGIT_SCHEMA_DIR from the developer's shell: a test that
    wants schemas says so (``schema_mirror``)."""
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "STACGIT_SCHEMA_DIR")}
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ.pop("STACGIT_SCHEMA_DIR", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def schema_mirror(monkeypatch) -> Path:
    """STACGIT_SCHEMA_DIR pointed at the repository's pinned STAC extension schemas."""
    if not (MIRROR / "schemas.lock.json").is_file():
        pytest.fail(f"the pinned schemas are missing at {MIRROR} (tests validate offline against them)")
    monkeypatch.setenv("STACGIT_SCHEMA_DIR", str(MIRROR))
    return MIRROR


def copy_examples(dest: Path, catalogs=("shift", "3dep")) -> Path:
    (dest / "catalogs").mkdir(parents=True)
    for c in catalogs:
        shutil.copytree(REPO / "catalogs" / c, dest / "catalogs" / c, ignore=shutil.ignore_patterns("sources") if c == "synthetic" else None)
    shutil.copytree(REPO / "mappings", dest / "mappings")
    shutil.copytree(REPO / "schemas", dest / "schemas")
    shutil.copy(REPO / "dodo.py", dest / "dodo.py")
    return dest


def add_synthetic(repo: Path, items: int = 1200) -> None:
    import generate

    if not (repo / "catalogs" / "synthetic").exists():
        shutil.copytree(REPO / "catalogs" / "synthetic", repo / "catalogs" / "synthetic", ignore=shutil.ignore_patterns("sources"))
    generate.write_sources(repo / "catalogs" / "synthetic" / "sources", items, 2)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_examples(tmp_path / "repo")


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (a build directory): the build holds no history, so all of it
    is what the commit determines."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


class Result:
    def __init__(self, code: int, out: str, err: str):
        self.exit_code, self.stdout, self.stderr = code, out, err

    @property
    def json(self):
        import json

        return json.loads(self.stdout)


def stacgit(repo: Path, *args: str) -> Result:
    """Run the CLI in-process (click's CliRunner)."""
    from stacgit.cli import cli

    command, *rest = args
    if command in ("patch", "schemas"):  # a command group: -C belongs to the subcommand
        command, rest = f"{command} {rest[0]}", rest[1:]
    res = CliRunner().invoke(cli, [*command.split(), "-C", str(repo), *rest], catch_exceptions=False)
    return Result(res.exit_code, res.stdout, res.stderr)


def stacgit_proc(repo: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (what users run)."""
    return subprocess.run([sys.executable, "-m", "stacgit", *args], cwd=repo, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="session")
def pg_cluster():
    """A real PostgreSQL + PostGIS + pgstac cluster on 127.0.0.1 for the session (tests/pg_server.py),
    with a migrated template database. Missing server binaries fail the tests that need it."""
    from pg_server import PgServer

    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pgstac_dsn(pg_cluster, request) -> str:
    """A fresh pgstac database (a copy of the migrated one) for one test; its DSN has a password."""
    import re

    import psycopg

    name = "t_" + re.sub(r"\W", "_", request.node.name.lower())[:50]
    with psycopg.connect(pg_cluster.dsn.rsplit("/", 1)[0] + "/template1", autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}"')
        con.execute(f'CREATE DATABASE "{name}" TEMPLATE postgres')
    return pg_cluster.dsn.rsplit("/", 1)[0] + "/" + name
