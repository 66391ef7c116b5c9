"""``stacgit diff``: what changed between two builds, for reviewers and for maps.

The new side is this checkout's ``build/``; the old side is another build directory, or the
build of a git ref made in a worktree under ``.stacgit/diff-base/`` (kept, so the next diff
against a nearby ref builds incrementally). Manifests are compared first; only files whose
sha256 differs are read. Items are matched by (collection, id), so an item that moved in the
layout but kept its content is not a change: structural links (root, parent, collection,
self) are left out of the comparison.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import jsonpatch
import orjson

from stacgit.errors import StacgitError
from stacgit.hashing import canonical_json, pretty_json
from stacgit.stac import STRUCTURAL_RELS
from stacgit.project import Project
from stacgit.runner import run_build
from stacgit.writers import read_manifest

MD_LIMIT = 65_000
"""GitHub's limit for a comment body is 65,536 characters."""
_COLORS = {"added": "#2ca02c", "modified": "#ff7f0e", "deleted": "#d62728"}
_INDEX = re.compile(r"/(\d+)(?=/|$)")


@dataclass
class CollectionDiff:
    added: list[str] = field(default_factory=list)
    modified: dict[str, list] = field(default_factory=dict)  # id -> JSON patch
    deleted: list[str] = field(default_factory=list)
    collection_patch: list | None = None
    causes: list[str] = field(default_factory=list)
    footprints: list[tuple[str, str, dict | None]] = field(default_factory=list)  # (id, change, geometry)

    @property
    def total(self) -> int:
        return len(self.added) + len(self.modified) + len(self.deleted) + (1 if self.collection_patch else 0)

    def field_groups(self) -> list[tuple[str, int]]:
        counts: Counter = Counter()
        for patch in self.modified.values():
            for key in {f"{op['op']} {_INDEX.sub('/*', op['path'])}" for op in patch}:
                counts[key] += 1
        return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _manifest(build: Path, catalog: str) -> dict[str, str]:
    return {p: e["sha256"] for p, e in (read_manifest(build / catalog) or {}).items()}


def _comparable(doc: dict) -> dict:
    doc = dict(doc)
    doc["links"] = [l for l in doc.get("links") or [] if l.get("rel") not in STRUCTURAL_RELS]
    return doc


def _read(path: Path) -> dict | None:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def compare(old_build: Path, new_build: Path, catalogs: list[str]) -> dict[str, CollectionDiff]:
    """Per ``catalog/collection``: added, modified (with JSON patches) and deleted items."""
    result: dict[str, CollectionDiff] = defaultdict(CollectionDiff)
    for cat in catalogs:
        old, new = _manifest(old_build, cat), _manifest(new_build, cat)
        old_items: dict[tuple[str, str], dict] = {}
        new_items: dict[tuple[str, str], dict] = {}
        for side, files, root, bucket in ((0, old, old_build, old_items), (1, new, new_build, new_items)):
            other = new if side == 0 else old
            for path, sha in files.items():
                if not path.endswith(".json") or other.get(path) == sha or path.count("/") < 1:
                    continue
                doc = _read(root / cat / path)
                if doc is None:
                    continue
                if doc.get("type") == "Feature":
                    bucket[(doc.get("collection") or path.split("/", 1)[0], doc["id"])] = doc
                elif doc.get("type") == "Collection" and path.endswith("/collection.json"):
                    bucket[(doc["id"], "")] = doc
        for key in sorted(set(old_items) | set(new_items)):
            coll, item_id = key
            d = result[f"{cat}/{coll}"]
            a, b = old_items.get(key), new_items.get(key)
            if not item_id:  # the collection document
                if a is not None and b is not None:
                    patch = jsonpatch.make_patch(_comparable(a), _comparable(b)).patch
                    if patch:
                        d.collection_patch = patch
                elif b is not None:
                    d.collection_patch = [{"op": "add", "path": "", "value": "(new collection)"}]
                else:
                    d.collection_patch = [{"op": "remove", "path": ""}]
                continue
            if a is None:
                d.added.append(item_id)
                d.footprints.append((item_id, "added", b.get("geometry")))
            elif b is None:
                d.deleted.append(item_id)
                d.footprints.append((item_id, "deleted", a.get("geometry")))
            else:
                patch = jsonpatch.make_patch(_comparable(a), _comparable(b)).patch
                if patch:
                    d.modified[item_id] = patch
                    d.footprints.append((item_id, "modified", b.get("geometry")))
    return {k: v for k, v in result.items() if v.total}


def _causes(project: Project, base: str, diffs: dict[str, CollectionDiff]) -> None:
    """Which committed inputs changed between ``base`` and the working tree, per collection."""
    out = subprocess.run(["git", "diff", "--name-only", base, "--", "catalogs", "mappings", "patches"], cwd=project.root, capture_output=True, text=True)
    untracked = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "--", "catalogs", "mappings", "patches"], cwd=project.root, capture_output=True, text=True)
    new = set(untracked.stdout.split())
    files = sorted(set(out.stdout.split()) | new)
    for cat in project.catalogs.values():
        for coll in cat.collections:
            key = coll.key
            mine = []
            patches = {p.file for p in project.patches_for(coll) + project.patches_for(coll, "collection")}
            for f in files:
                if f == coll.mapping_path or f in patches or f == cat.yaml_path or f.startswith(f"catalogs/{cat.id}/sources/"):
                    mine.append(f)
                elif f.startswith("patches/") and f.endswith((".yaml", ".yml")) and not (project.root / f).exists():
                    mine.append(f)  # a removed patch: its target is only known at the base
            if mine and key in diffs:
                diffs[key].causes = [f + (" (untracked)" if f in new else "") for f in mine]


def base_build(project: Project, ref: str) -> Path:
    """Build ``ref`` in a reusable worktree; return its build directory."""
    git = ["git", "-C", str(project.root)]
    rev = subprocess.run([*git, "rev-parse", "--verify", f"{ref}^{{commit}}"], capture_output=True, text=True)
    if rev.returncode != 0:
        raise StacgitError(f"--base {ref}: not a commit in this repository ({rev.stderr.strip() or 'unknown ref'})")
    sha = rev.stdout.strip()
    work = project.state_dir / "diff-base" / "worktree"
    if (work / ".git").exists():
        r = subprocess.run(["git", "-C", str(work), "checkout", "-q", "--detach", "--force", sha], capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(work, ignore_errors=True)
            subprocess.run([*git, "worktree", "prune"], capture_output=True)
    if not (work / ".git").exists():
        work.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([*git, "worktree", "prune"], capture_output=True)
        r = subprocess.run([*git, "worktree", "add", "-q", "--detach", "--force", str(work), sha], capture_output=True, text=True)
        if r.returncode != 0:
            raise StacgitError(f"--base {ref}: cannot make a worktree: {r.stderr.strip()}")
    _copy_generated_sources(project.root, work)
    base = Project.load(work)
    summary = run_build(base, progress=False, validate=False)
    if summary.errors:
        first = summary.errors[0]
        raise StacgitError(f"--base {ref}: the base does not build: {first['unit']}: {first['message']}")
    return base.build_dir


def _copy_generated_sources(root: Path, work: Path) -> None:
    """Source files git ignores (generated, like the synthetic example's) are not in a
    worktree; the base build uses this checkout's copies."""
    out = subprocess.run(["git", "-C", str(root), "ls-files", "--others", "--ignored", "--exclude-standard", "--", "catalogs"], capture_output=True, text=True)
    for rel in out.stdout.splitlines():
        if "/sources/" in rel:
            dst = work / rel
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, dst)


def summary_json(diffs: dict[str, CollectionDiff], base: str) -> dict:
    totals = {"added": 0, "modified": 0, "deleted": 0}
    colls = {}
    for key, d in sorted(diffs.items()):
        n = {"added": len(d.added), "modified": len(d.modified), "deleted": len(d.deleted)}
        for k in totals:
            totals[k] += n[k]
        colls[key] = {
            **n,
            "collection_changed": d.collection_patch is not None,
            "collection_patch": d.collection_patch,
            "fields": [{"change": k, "items": c} for k, c in d.field_groups()],
            "items": {"added": sorted(d.added), "deleted": sorted(d.deleted), "modified": {i: p for i, p in sorted(d.modified.items())}},
            "causes": d.causes,
        }
    return {"base": base, "totals": totals, "collections": colls}


def summary_geojson(diffs: dict[str, CollectionDiff]) -> dict:
    features = []
    for key, d in sorted(diffs.items()):
        for item_id, change, geom in sorted(d.footprints, key=lambda f: (f[1], f[0])):
            color = _COLORS[change]
            features.append({
                "type": "Feature",
                "geometry": geom,
                "properties": {"id": item_id, "collection": key, "change": change, "stroke": color, "fill": color, "fill-opacity": 0.35, "stroke-width": 1},
            })
    return {"type": "FeatureCollection", "features": features}


MAP_SHARE = 3
"""The map block takes at most a third of the comment; the rest is for the tables and patches."""
MAP_FEATURES = 500
MAP_DECIMALS = 4  # about 10 m: enough to see where a footprint is


def map_block(geo: dict, budget: int) -> str:
    """A ```geojson block (GitHub draws it as a map) of the changed footprints, simplified and
    rounded, at most ``MAP_FEATURES`` of them and ``budget`` characters; what is left out is
    counted (``changes.geojson`` has them all)."""
    from shapely.geometry import mapping, shape

    features, shown = geo.get("features") or [], []
    used = 0
    for f in features[:MAP_FEATURES]:
        if f.get("geometry") is None:
            continue
        try:
            geom = shape(f["geometry"])
            small = _rounded(orjson.loads(orjson.dumps(mapping(geom.simplify(10 ** -MAP_DECIMALS, preserve_topology=True)))))
            if len(orjson.dumps(small)) > budget // 20:  # a footprint too detailed to share the map: its envelope
                small = _rounded(orjson.loads(orjson.dumps(mapping(geom.envelope))))
        except Exception:  # noqa: BLE001 - a footprint shapely cannot read is drawn as it is
            small = _rounded(f["geometry"])
        feature = {**f, "geometry": small}
        size = len(orjson.dumps(feature)) + 2
        if used + size > budget:
            break
        shown.append(feature)
        used += size
    if not shown:
        return ""
    text = "```geojson\n" + orjson.dumps({"type": "FeatureCollection", "features": shown}).decode() + "\n```"
    drawable = sum(1 for f in features if f.get("geometry") is not None)
    if drawable > len(shown):
        text += f"\n\n{len(shown)} of {drawable} changed footprints shown; `changes.geojson` has them all."
    return text


def _rounded(node):
    if isinstance(node, float):
        return round(node, MAP_DECIMALS)
    if isinstance(node, (list, tuple)):
        return [_rounded(v) for v in node]
    if isinstance(node, dict):
        return {k: _rounded(v) for k, v in node.items()}
    return node


def summary_markdown(data: dict, geo: dict | None = None, limit: int = MD_LIMIT) -> str:
    t = data["totals"]
    head = [
        "## stacgit change summary",
        "",
        f"Compared with `{data['base']}`: **{t['added']} added, {t['modified']} modified, {t['deleted']} deleted** items"
        + (f" in {len(data['collections'])} collection(s)." if data["collections"] else "."),
        "",
    ]
    if not data["collections"]:
        return "\n".join(head + ["No changes."]) + "\n"
    head += ["| collection | added | modified | deleted | collection document |", "|---|---:|---:|---:|---|"]
    order = sorted(data["collections"].items(), key=lambda kv: (-(kv[1]["added"] + kv[1]["modified"] + kv[1]["deleted"]), kv[0]))
    for key, c in order:
        head.append(f"| `{key}` | {c['added']} | {c['modified']} | {c['deleted']} | {'changed' if c['collection_changed'] else ''} |")
    head.append("")
    block = map_block(geo, limit // MAP_SHARE) if geo else ""
    if block:
        head += [block, ""]
    body: list[str] = []
    for key, c in order:
        body.append(f"### `{key}`")
        if c["causes"]:
            body.append("Caused by: " + ", ".join(f"`{f}`" for f in c["causes"]))
        if c["fields"]:
            body.append("")
            body.append("| change | items |")
            body.append("|---|---:|")
            for g in c["fields"]:
                body.append(f"| `{g['change']}` | {g['items']} |")
        for kind in ("added", "deleted"):
            ids = c["items"][kind]
            if ids:
                shown = ", ".join(f"`{i}`" for i in ids[:10])
                more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
                body.append(f"\n{kind.capitalize()}: {shown}{more}")
        if c["items"]["modified"]:
            body.append("\n<details><summary>Modified items (JSON Patch)</summary>\n")
            for i, (item_id, patch) in enumerate(c["items"]["modified"].items()):
                if i == 5:
                    body.append(f"... {len(c['items']['modified']) - 5} more modified items (see the JSON summary)")
                    break
                body.append(f"`{item_id}`\n```json\n{orjson.dumps(patch).decode()[:1500]}\n```")
            body.append("</details>")
        body.append("")
    text = "\n".join(head)
    out = [text]
    used = len(text)
    for i, line in enumerate(body):
        if used + len(line) + 200 > limit:
            out.append(f"\n... {len(body) - i} more lines (truncated to fit a pull-request comment; the JSON summary has everything)")
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out) + "\n"


def run_diff(project: Project, base: str | None = None, old: Path | None = None, as_is: bool = False) -> tuple[dict, dict]:
    """(JSON summary, GeoJSON) of the working tree against ``base`` (a git ref, built in a
    worktree) or ``old`` (a build directory). A stale build is brought up to date first, so the
    summary describes the working tree, not whatever ``build/`` holds; ``as_is`` compares
    ``build/`` as it is."""
    if (base is None) == (old is None):
        raise StacgitError("give one of --base GIT_REF or --old BUILD_DIR")
    if not as_is:
        _build_if_stale(project)
    new_build = project.build_dir
    if not any((new_build / c / "manifest.json").exists() for c in project.catalogs):
        raise StacgitError(f"{new_build}: no build to compare; run `stacgit build` first")
    if old is not None:
        if not old.is_dir():
            raise StacgitError(f"--old {old}: not a directory")
        old_build, label = old, str(old)
    else:
        old_build, label = base_build(project, base), base
    catalogs = sorted(set(project.catalogs) | {p.parent.name for p in old_build.glob("*/manifest.json")})
    diffs = compare(old_build, new_build, catalogs)
    if base is not None:
        _causes(project, base, diffs)
    return summary_json(diffs, label), summary_geojson(diffs)


def _build_if_stale(project: Project) -> None:
    from stacgit.runner import compute_status

    if not compute_status(project):
        return
    summary = run_build(project, progress=False)
    if summary.errors:
        first = summary.errors[0]
        raise StacgitError(f"the working tree does not build, so there is no change summary: {first['unit']}: {first['message']}")


def write_outputs(out: Path, data: dict, geo: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "summary.md": summary_markdown(data, geo).encode(),
        "summary.json": pretty_json(data),
        "changes.geojson": canonical_json(geo) + b"\n",
    }
    for name, data_ in files.items():
        (out / name).write_bytes(data_)
    return [out / n for n in files]
