"""``stacgit init DIR``: a new catalog repository with one small, buildable example."""

from __future__ import annotations

from pathlib import Path

from stacgit.errors import ConfigError

FILES = {
    "dodo.py": '''"""doit entry point: `doit build` runs the same tasks as `stacgit build`."""

from stacgit.runner import load_for_doit

PROJECT, DOIT_CONFIG, task_build = load_for_doit(".")
''',
    ".gitignore": "/build/\n/.stacgit/\n.doit.db*\n__pycache__/\n",
    "catalogs/example/catalog.yaml": """id: example
title: Example catalog
description: A first catalog made by stacgit init.
license: CC-BY-4.0
collections:
  - id: scenes
    title: Example scenes
    description: One item per row of sources/scenes.csv.
    source: {type: file, path: sources/scenes.csv}
    mapping: mappings/example.yaml
""",
    "catalogs/example/sources/scenes.csv": """scene_id,acquired,lon,lat,cloud
scene-001,2024-05-01T10:15:00Z,12.49,41.89,5
scene-002,2024-05-02T10:20:00Z,2.35,48.86,40
""",
    "mappings/example.yaml": """id: {path: scene_id}
datetime: {path: acquired, type: datetime}
geometry: {point: [lon, lat]}
properties:
  eo:cloud_cover: {path: cloud, type: float}
assets:
  data: {href: 'https://example.com/data/{scene_id}.tif', type: image/tiff; application=geotiff, roles: [data]}
""",
    "patches/README.md": "JSON-Patch update and delete specs go here, one or more per YAML file.\n",
}


def init_repo(directory: Path) -> list[str]:
    """Write the scaffold; refuse to overwrite an existing catalog repository."""
    if (directory / "catalogs").exists():
        raise ConfigError(f"{directory}: already contains catalogs/; not overwriting")
    written = []
    for rel, text in FILES.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(rel)
    return written
