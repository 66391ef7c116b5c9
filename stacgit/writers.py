"""Output files: atomic writes of canonical JSON, relative links, STAC documents.

Paths handled here are posix paths relative to ``build/<catalog>/``.
"""

from __future__ import annotations

import functools
import itertools
import os
import posixpath
from pathlib import Path
from typing import Any, Callable

import orjson

from stacgit.stac import JSON, STAC_VERSION
from stacgit.fileio import pwrite_all
from stacgit.hashing import pretty_json


_counter = itertools.count()


class AtomicWriter:
    """Replaces files via temp file + rename; temp files live in one directory of their own so
    a killed build leaves nothing inside the output tree.

    A file that does not exist yet (``fresh=True``) is created in place, which costs half the
    metadata operations of temp + rename: nobody can hold an older version of it, and the
    caller has journaled the path (state ``pending``) so a killed build removes a partial one.
    """

    def __init__(self, out_dir: Path, tmp_dir: Path):
        self.out_dir = out_dir
        self.tmp_dir = tmp_dir
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self._dirs: set[str] = set()
        self._prefix = f"{os.getpid()}-"

    def write(self, rel: str, data: bytes | list, fresh: bool = False) -> None:
        """Write ``data``: bytes, or a list of byte strings (a large file assembled from parts,
        written without joining them first). An OS error names the file being written, not
        the temporary file it went through."""
        try:
            self._write(rel, data, fresh)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, os.path.join(self.out_dir, rel)) from None

    def _write(self, rel: str, data: bytes | list, fresh: bool = False) -> None:
        parts = data if isinstance(data, list) else (data,)
        final = os.path.join(self.out_dir, rel)
        parent = os.path.dirname(final)
        if parent not in self._dirs:
            os.makedirs(parent, exist_ok=True)
            self._dirs.add(parent)
        if fresh:
            try:
                with open(final, "xb") as f:
                    f.writelines(parts)
                return
            except FileExistsError:  # not ours (left by hand or another tool): replace it
                pass
        tmp = os.path.join(self.tmp_dir, self._prefix + str(next(_counter)))
        with open(tmp, "wb") as f:
            f.writelines(parts)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            if exc.errno != 18:  # EXDEV: tmp dir on another file system
                raise
            local_tmp = final + f".{self._prefix}tmp"
            with open(local_tmp, "wb") as f:
                f.writelines(parts)
            os.unlink(tmp)
            os.replace(local_tmp, final)

    def overwrite(self, rel: str, parts: list) -> None:
        """Write a large file into itself: its pages (in the page cache when it was just
        written or read) are reused instead of a new file's being allocated, filled and
        written back. Not atomic: the caller lists ``rel`` as pending first, so a build killed
        half way removes it (see ``build._recover_pending``); readers check its content."""
        final = os.path.join(self.out_dir, rel)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        fd = os.open(final, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            at = 0
            for part in parts:
                at += pwrite_all(fd, part, at)
            os.ftruncate(fd, at)
        finally:
            os.close(fd)

    def delete(self, rel: str, stop_at: str = "") -> None:
        """Delete a file and the directories it leaves empty, up to ``stop_at``."""
        final = os.path.join(self.out_dir, rel)
        try:
            os.unlink(final)
        except FileNotFoundError:
            pass
        parent = posixpath.dirname(rel)
        while parent and parent != stop_at and parent.startswith(stop_at):
            try:
                os.rmdir(os.path.join(self.out_dir, parent))
            except OSError:
                break
            self._dirs.discard(os.path.join(self.out_dir, parent))
            parent = posixpath.dirname(parent)


def same_content(path: Path, parts: list) -> bool:
    """Whether the file holds exactly the concatenation of ``parts`` (bytes-like), read through
    one small buffer: a large file is not loaded whole to find it unchanged."""
    size = 1 << 20
    try:
        if os.path.getsize(path) != sum(len(p) for p in parts):
            return False
        f = open(path, "rb", buffering=0)
    except FileNotFoundError:
        return False
    buf = memoryview(bytearray(size))
    with f:
        for part in parts:
            view = memoryview(part)
            for at in range(0, len(view), size):
                want = view[at : at + size]
                got = buf[: len(want)]
                if f.readinto(got) != len(want) or got != want:
                    return False
    return True


def rel_href(from_file: str, to_file: str) -> str:
    """Relative href from one output file to another, './'-prefixed when in the same folder."""
    return _rel_href(posixpath.dirname(from_file) or ".", to_file)


@functools.lru_cache(maxsize=1 << 16)
def _rel_href(from_dir: str, to_file: str) -> str:
    href = posixpath.relpath(to_file, from_dir)
    return href if href.startswith("../") else "./" + href


def link(rel: str, href: str, media_type: str = JSON, title: str | None = None) -> dict[str, Any]:
    out = {"rel": rel, "href": href, "type": media_type}
    if title is not None:
        out["title"] = title
    return out


def structural_links(path: str, root: str, parent: str, collection: str | None = None) -> list[dict]:
    links = [link("root", rel_href(path, root)), link("parent", rel_href(path, parent))]
    if collection is not None:
        links.append(link("collection", rel_href(path, collection)))
    return links


_LINKS_KEY = b'\n  "links": ['


def splice_links(pretty_body: bytes, path: str, root: str, parent: str, collection: str) -> bytes:
    """An item file: root/parent/collection links put before the mapping's own links of the
    pretty-printed body, without parsing it again.

    In key-sorted, 2-space-indented JSON the top-level ``links`` key is the only line that
    starts with exactly two spaces and ``"links": [`` (a string value cannot hold a raw newline),
    so the structural links are inserted right after it; the bytes equal ``pretty_json`` of the
    body with ``structural_links(...) + links``.
    """
    at = pretty_body.find(_LINKS_KEY)
    if at < 0:
        raise ValueError("item body has no top-level links array")
    at += len(_LINKS_KEY)
    frag = _link_fragment(posixpath.dirname(path) or ".", root, parent, collection)
    if pretty_body[at : at + 1] == b"]":  # "links": [] -> three links, closed at indent 2
        return pretty_body[:at] + frag + b"\n  " + pretty_body[at:]
    return pretty_body[:at] + frag + b"," + pretty_body[at:]


_FRAGMENTS: dict[tuple[int, str, str, str], bytes] = {}


def _link_fragment(item_dir: str, root: str, parent: str, collection: str) -> bytes:
    """Pretty-printed root/parent/collection links at indent 4. The three targets live in
    folders above the item, so the hrefs depend only on the item folder's depth: cached."""
    key = (item_dir.count("/"), root, parent, collection)
    frag = _FRAGMENTS.get(key)
    if frag is None:
        links = [link("root", rel_href(item_dir + "/x", root)), link("parent", rel_href(item_dir + "/x", parent)), link("collection", rel_href(item_dir + "/x", collection))]
        frag = b",".join(b"\n    " + pretty_json(x)[:-1].replace(b"\n", b"\n    ") for x in links)
        if len(_FRAGMENTS) > 4096:
            _FRAGMENTS.clear()
        _FRAGMENTS[key] = frag
    return frag


def render_catalog(doc_id: str, title: str | None, description: str, path: str, root: str, parent: str | None, children: list[dict], extra_links: tuple[dict, ...] = (), extra: dict | None = None) -> bytes:
    if parent is None:
        links = [link("root", rel_href(path, root))]
    else:
        links = structural_links(path, root, parent)
    links += list(extra_links) + children
    doc: dict[str, Any] = {
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": doc_id,
        "description": description,
        "links": links,
    }
    if title is not None:
        doc["title"] = title
    if extra:
        doc.update(extra)
    return pretty_json(doc)


def render_collection(coll_id: str, meta: dict, path: str, root: str, extent: dict, children: list[dict], transform: Callable[[dict], dict] | None = None) -> bytes:
    doc: dict[str, Any] = {
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": coll_id,
        "description": meta["description"],
        "license": meta["license"],
        "extent": extent,
        "links": structural_links(path, root, root) + list(meta.get("links", [])) + children,
    }
    for k in ("title", "keywords", "providers"):
        if k in meta:
            doc[k] = meta[k]
    for k, v in meta.get("extra_fields", {}).items():
        doc.setdefault(k, v)
    if transform is not None:
        doc = transform(doc)
    return pretty_json(doc)


def read_manifest(cat_dir: Path) -> dict[str, dict] | None:
    """The ``files`` of a catalog build's ``manifest.json`` (path -> {sha256, size}), or None
    when there is no build. A malformed manifest raises orjson / KeyError / TypeError."""
    try:
        return orjson.loads((cat_dir / "manifest.json").read_bytes())["files"]
    except FileNotFoundError:
        return None
