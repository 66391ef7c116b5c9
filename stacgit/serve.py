"""``stacgit serve``: a STAC API on 127.0.0.1 over a build, to try pystac-client or STAC Browser
against a catalog before publishing it.

The server is ``rustac serve`` (``pip install 'stacgit[serve]'``), in memory, loaded with the
build's pgstac files: each collection (its document without the static catalog's links, which
would send rustac walking the relative item links) and the items of every partition.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import orjson

from stacgit.errors import ConfigError, PlanError
from stacgit.project import Project


def server_argv(project: Project, catalogs: list[str], port: int) -> list[str]:
    """The ``rustac serve`` command for the built ``catalogs``; writes the collection documents it
    loads under ``.stacgit/serve/``."""
    exe = shutil.which("rustac", path=str(Path(sys.executable).parent)) or shutil.which("rustac")
    if exe is None:
        raise ConfigError("stacgit serve needs rustac: pip install 'stacgit[serve]'")
    folder = project.state_dir / "serve"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    hrefs: list[str] = []
    for cat_id in catalogs:
        docs = project.build_dir / cat_id / "pgstac" / "collections.ndjson"
        if not docs.is_file():
            raise PlanError(f"{cat_id}: no pgstac output in the build (run `stacgit build`; pgstac: true)")
        for line in docs.read_bytes().splitlines():
            doc = orjson.loads(line)
            path = folder / f"{cat_id}.{doc['id']}.json"
            path.write_bytes(orjson.dumps({**doc, "links": []}))
            hrefs.append(str(path))
            hrefs += [str(p) for p in sorted((project.build_dir / cat_id / "pgstac" / doc["id"]).glob("*.ndjson"))]
    return [exe, "serve", "--addr", f"127.0.0.1:{port}", *hrefs]


def serve(project: Project, catalog: str | None, port: int) -> None:
    """Become the server (exec): a signal that stops ``stacgit serve`` stops it, nothing is left
    running behind."""
    catalogs = [project.catalog(catalog).id] if catalog else sorted(c for c in project.catalogs if (project.build_dir / c).is_dir())
    argv = server_argv(project, catalogs, port)
    sys.stderr.write(f"serving {', '.join(catalogs)} at http://127.0.0.1:{port}/ (Ctrl-C stops)\n")
    sys.stderr.flush()
    os.execv(argv[0], argv)
