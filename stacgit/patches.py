"""Patch specs: reviewed JSON-Patch updates and deletes in ``patches/*.yaml``.

A patch file holds one or more YAML documents (a ``.json`` file holds one object or a list).
Each document is one patch::

    description: Cloud cover was reported in tenths, not percent
    target: {catalog: shift, collection: aviris-ng-l2a}        # collection may be '*'
    select: {cql2: "eo:cloud_cover < 1"}                       # and/or ids: [...]
    ops:
      - {op: replace, path: /properties/eo:cloud_cover, value: 0}

or ``delete: true`` instead of ``ops``; ``target.document: collection`` patches the collection
document itself (no ``select``). Patches apply after mapping, in file-name order, then document
order. Loading checks keys, types, op names, JSON Pointers and CQL2; nothing is evaluated here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import jsonpointer

from stacgit import _spec as S
from stacgit._yaml import Located, load_yaml_documents
from stacgit.errors import ConfigError
from stacgit.hashing import digest_obj

PATCH_DIR = "patches"
PATCH_SUFFIXES = (".yaml", ".yml", ".json")
OPS = ("add", "remove", "replace", "move", "copy", "test")
PROTECTED = ("/id", "/collection", "/properties/created")
"""Item paths no patch may change: identity, and ``created`` (kept from the source)."""

_OP = S.obj(
    {"op": S.Node("str", choices=OPS), "path": S.STR, "value": S.ANY, "from": S.STR},
    required=("op", "path"),
)
_DOC = S.obj(
    {
        "description": S.STR,
        "target": S.obj(
            {"catalog": S.STR, "collection": S.STR, "document": S.Node("str", choices=("item", "collection"))},
            required=("catalog", "collection"),
        ),
        "select": S.obj({"ids": S.lst(S.STR), "cql2": S.Node(("str", "obj"))}),
        "ops": S.lst(_OP),
        "delete": S.BOOL,
    },
    required=("description", "target"),
)


class PatchFailed(Exception):
    """An op of a patch could not be applied to one document."""

    def __init__(self, op_index: int, reason: str):
        super().__init__(reason)
        self.op_index = op_index
        self.reason = reason


@dataclass(frozen=True)
class Patch:
    file: str  # repo-relative, e.g. patches/0001-fix-cloud-cover.yaml
    index: int  # 1-based document number within the file
    line: int
    description: str
    catalog: str
    collection: str  # an id or '*'
    document: str  # 'item' or 'collection'
    ids: tuple[str, ...] | None
    cql2: Any  # cql2-text string, cql2-json dict, or None
    ops: tuple[dict, ...]
    delete: bool
    digest: str

    @property
    def key(self) -> str:
        """Stable name of this patch in state and reports: ``file#document``."""
        return f"{self.file}#{self.index}"

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line} (document {self.index})"

    def targets(self, catalog: str, collection: str) -> bool:
        return self.catalog == catalog and self.collection in ("*", collection)

    def expr(self):
        """The compiled CQL2 expression (cached per process), or None."""
        if self.cql2 is None:
            return None
        cached = _EXPRS.get(self.digest)
        if cached is None:
            import cql2

            cached = _EXPRS[self.digest] = cql2.Expr(self.cql2)
        return cached

    def apply(self, doc: dict) -> dict:
        """Apply the ops one by one (each sees the result of the previous one); a failing op
        raises PatchFailed with its index and the document is left to the caller to discard."""
        for i, op in enumerate(self.ops):
            try:
                doc = jsonpatch.apply_patch(doc, [op], in_place=True)
            except jsonpatch.JsonPatchTestFailed as exc:
                raise PatchFailed(i, f"test failed: {_reason(exc)}") from None
            except (jsonpatch.JsonPatchConflict, jsonpointer.JsonPointerException) as exc:
                raise PatchFailed(i, f"path {op['path']!r} cannot be applied: {_reason(exc)}") from None
            except jsonpatch.JsonPatchException as exc:
                raise PatchFailed(i, _reason(exc)) from None
        return doc


_EXPRS: dict[str, Any] = {}


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _check_pointer(doc: Located, kp: tuple, pointer: str) -> None:
    try:
        jsonpointer.JsonPointer(pointer)
    except jsonpointer.JsonPointerException as exc:
        raise S.fail(doc, kp, f"invalid JSON Pointer {pointer!r}: {_reason(exc)}") from None


def _protected(pointer: str) -> str | None:
    for p in PROTECTED:
        if pointer == p or pointer.startswith(p + "/") or p.startswith(pointer + "/") or pointer == "":
            return p
    return None


def _check_doc(doc: Located, file: str, index: int) -> Patch:
    S.check(doc, _DOC)
    data = doc.data
    target = data["target"]
    document = target.get("document", "item")
    select = data.get("select")
    has_ops, delete = "ops" in data, data.get("delete", False)
    if has_ops == bool(delete):
        raise S.fail(doc, (), "needs either 'ops' or 'delete: true'")
    if document == "collection":
        if select is not None:
            raise S.fail(doc, ("select",), "a patch of the collection document selects nothing")
        if delete:
            raise S.fail(doc, ("delete",), "a collection document cannot be deleted by a patch")
        if target["collection"] == "*":
            raise S.fail(doc, ("target", "collection"), "name one collection to patch its document")
    elif not select or ("ids" not in select and "cql2" not in select):
        raise S.fail(doc, ("select",), "needs 'ids', 'cql2' or both")
    ids = None
    if select and "ids" in select:
        ids = tuple(select["ids"])
        if not ids:
            raise S.fail(doc, ("select", "ids"), "is empty")
    expr = None
    if select and "cql2" in select:
        expr = select["cql2"]
        try:
            import cql2

            cql2.Expr(expr)
        except Exception as exc:  # cql2 raises plain Exception/ValueError subclasses
            msg = " ".join(str(exc).split())
            raise S.fail(doc, ("select", "cql2"), f"invalid CQL2: {msg[:300]}") from None
    ops = tuple(data.get("ops") or ())
    if has_ops and not ops:
        raise S.fail(doc, ("ops",), "is empty")
    for i, op in enumerate(ops):
        kp = ("ops", i)
        _check_pointer(doc, kp + ("path",), op["path"])
        if op["op"] in ("move", "copy"):
            if "from" not in op:
                raise S.fail(doc, kp, f"op '{op['op']}' needs 'from'")
            _check_pointer(doc, kp + ("from",), op["from"])
        elif "from" in op:
            raise S.fail(doc, kp + ("from",), f"op '{op['op']}' takes no 'from'")
        if op["op"] in ("add", "replace", "test") and "value" not in op:
            raise S.fail(doc, kp, f"op '{op['op']}' needs 'value'")
        if document == "item" and op["op"] != "test":
            touched = [op["path"]] + ([op["from"]] if op["op"] == "move" else [])
            for pointer in touched:
                hit = _protected(pointer)
                if hit is not None:
                    what = "the item's identity" if hit != "/properties/created" else "kept from the source"
                    raise S.fail(doc, kp + ("path",), f"a patch may not change {hit} ({what})")
    try:
        jsonpatch.JsonPatch(list(ops))
    except jsonpatch.InvalidJsonPatch as exc:
        raise S.fail(doc, ("ops",), _reason(exc)) from None
    return Patch(
        file=file,
        index=index,
        line=doc.line(()) or 1,
        description=data["description"],
        catalog=target["catalog"],
        collection=target["collection"],
        document=document,
        ids=ids,
        cql2=expr,
        ops=copy.deepcopy(ops),
        delete=bool(delete),
        digest=digest_obj([file, index, data]),
    )


def _json_documents(path: Path, display: str) -> list[Located]:
    import json

    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        raise ConfigError(f"{display}{':' + str(line) if line else ''}: invalid JSON: {_reason(exc)}") from None
    docs = data if isinstance(data, list) else [data]
    return [Located(Path(display), d, {(): 1}) for d in docs]


def patch_files(root: Path) -> list[Path]:
    pdir = root / PATCH_DIR
    if not pdir.is_dir():
        return []
    return sorted(p for p in pdir.iterdir() if p.is_file() and p.suffix in PATCH_SUFFIXES)


def load_patch_file(root: Path, path: Path) -> list[Patch]:
    rel = path.relative_to(root).as_posix()
    if path.suffix == ".json":
        docs = _json_documents(path, rel)
    else:
        docs = load_yaml_documents(path, rel)
    return [_check_doc(doc, rel, i + 1) for i, doc in enumerate(docs)]


def load_patches(root: Path) -> list[Patch]:
    """Every patch of the repository, in application order (file name, then document)."""
    out: list[Patch] = []
    for path in patch_files(root):
        out.extend(load_patch_file(root, path))
    return out
