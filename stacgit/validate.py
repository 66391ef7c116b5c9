"""Validation of STAC documents: JSON schemas (core + every declared extension + custom
schemas), extension checks and lint, with a report grouped by (schema, message).

The fast path is jsonschema-rs, compiled once per schema URL with every ``$ref`` served by
the :class:`~stacgit.schemas.SchemaStore` (never the network unless the store is online).
Like stac-validator (python-jsonschema without a format checker), ``format`` is an annotation,
not an assertion; datetimes are still checked by the STAC patterns and by lint.
stac-validator is the reference implementation; ``tests/unit/test_validate.py`` checks that
both give the same verdict on every document of the test corpus.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import jsonschema_rs
import orjson

from stacgit.extensions import Extension, Problem, all_extensions, json_pointer
from stacgit.fileio import read_ahead, read_file
from stacgit.hashing import digest_obj
from stacgit.lint import lint
from stacgit.schemas import SchemaStore, SchemaUnavailable, canonical_url

VALIDATOR_VERSION = "1"
"""Bumped when stacgit's checks change, so cached verdicts are recomputed."""
EXAMPLES_PER_GROUP = 3
PARALLEL_MIN = 2000
READ_BATCH = 256

_KIND_FILE = {"Feature": ("item", "item"), "Collection": ("collection", "collection"), "Catalog": ("catalog", "catalog")}


def core_schema_url(doc: dict) -> str | None:
    kind = _KIND_FILE.get(doc.get("type"))  # type: ignore[arg-type]
    version = doc.get("stac_version")
    if kind is None or not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+(-[\w.]+)?", version):
        return None
    return f"https://schemas.stacspec.org/v{version}/{kind[0]}-spec/json-schema/{kind[1]}.json"


_SUBJECT = re.compile(r"^(.*?) (is not|is a required|has less|has more|is less|is greater|is longer|is shorter|does not|is not allowed|was expected|is too|should|is disallowed|has non-unique)(.*)$", re.S)


def short_message(err) -> str:
    """jsonschema-rs messages start with the offending value; keep the value out of the
    message (it is in the example's pointer) so errors group, except property names."""
    msg = err.message
    kind = type(err.kind).__name__
    m = _SUBJECT.match(msg)
    if m is None:
        return msg if len(msg) <= 200 else msg[:197] + "..."
    subject = m.group(1)
    if kind in ("Required", "AdditionalProperties", "UnevaluatedProperties") and len(subject) <= 80:
        return msg
    return f"value {m.group(2)}{m.group(3)}"[:300]


def _descend(err) -> list:
    """Best matching leaf errors of an anyOf/oneOf failure: the branch that failed least
    (ignoring branches whose discriminating ``type``/``const``/``enum`` did not match)."""
    ctx = getattr(err.kind, "context", None)
    if not ctx:
        return [err]
    base = list(err.instance_path)

    def wrong_branch(branch: list) -> bool:
        for e in branch:
            kind = type(e.kind).__name__
            path = list(e.instance_path)
            if kind == "Type" and path == base:
                return True
            if kind in ("Enum", "Constant") and path[:-1] == base and path and path[-1] == "type":
                return True
        return False

    candidates = [b for b in ctx if b and not wrong_branch(b)] or [b for b in ctx if b]
    if not candidates:
        return [err]
    best = min(candidates, key=lambda b: (len(b), -max(len(list(e.instance_path)) for e in b)))
    out = []
    for e in best:
        out += _descend(e)
    return out


@dataclass
class DocResult:
    status: str  # valid | invalid | schema_unavailable
    problems: list[Problem] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # url -> why
    schemas: tuple[str, ...] = ()  # the schema URLs the document was validated against

    def to_row(self) -> bytes | None:
        if not self.problems and not self.unavailable:
            return None
        return orjson.dumps(
            {"p": [[p.schema, p.message, p.pointer, p.severity] for p in self.problems], "u": self.unavailable}
        )

    @classmethod
    def from_row(cls, status: str, row: bytes | str | None) -> "DocResult":
        if row is None:
            return cls(status)
        d = orjson.loads(row)
        return cls(status, [Problem(*p) for p in d["p"]], d["u"])


class Validator:
    """Validates documents; compiles each schema once. Picklable settings, lazy state."""

    def __init__(self, store: SchemaStore, repo_root: Path | None = None, lint_enabled: bool = True):
        self.store = store
        self.repo_root = repo_root
        self.lint_enabled = lint_enabled
        self._compiled: dict[str, Any] = {}
        self._checks: dict[str, Any] | None = None
        self._fingerprints: dict[tuple[str, ...], str] = {}

    def __getstate__(self):
        return {"store": SchemaStore(self.store.dirs, self.store.cache_dir, self.store.online), "repo_root": self.repo_root, "lint_enabled": self.lint_enabled}

    def __setstate__(self, state):
        self.__init__(state["store"], state["repo_root"], state["lint_enabled"])

    # -------------------------------------------------------------- schemas

    def _retrieve(self, uri: str) -> dict:
        if uri.startswith("file:") and self.repo_root is not None:
            return self._file_schema(uri)
        return self.store.get(uri)

    def _file_schema(self, uri: str) -> dict:
        from urllib.parse import unquote, urlsplit

        path = Path(unquote(urlsplit(uri).path)).resolve()
        root = Path(self.repo_root).resolve()  # type: ignore[arg-type]
        if root not in path.parents:
            raise SchemaUnavailable(uri, "custom schema files must be inside the repository")
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise SchemaUnavailable(uri, f"cannot read: {exc}") from None
        if not isinstance(doc, dict):
            raise SchemaUnavailable(uri, "a schema must be a JSON object")
        return doc

    def schema_url(self, ref: str) -> str:
        """A custom schema reference (URL or repo-relative path) as a URL."""
        if ref.startswith(("https://", "http://", "file:")) or self.repo_root is None:
            return canonical_url(ref)
        return (Path(self.repo_root) / ref).resolve().as_uri()

    def compiled(self, url: str):
        got = self._compiled.get(url)
        if got is None:
            try:
                if url.startswith("file:"):
                    schema = self._file_schema(url)
                    self.store.require(url, schema)
                else:
                    self.store.require(url)
                    schema = self.store.get(url)
                got = jsonschema_rs.validator_for(schema, retriever=self._retrieve, base_uri=url, validate_formats=False)
            except SchemaUnavailable as exc:
                got = exc
            except (ValueError, jsonschema_rs.ReferencingError) as exc:
                got = SchemaUnavailable(url, f"schema cannot be compiled: {str(exc).splitlines()[0][:200]}")
            self._compiled[url] = got
        return got

    def schemas_for(self, doc: dict, extra: Iterable[str] = ()) -> tuple[list[str], list[Problem]]:
        urls: list[str] = []
        problems: list[Problem] = []
        core = core_schema_url(doc)
        if core is None:
            problems.append(Problem("stac", "not a STAC document: needs type Feature, Collection or Catalog and a stac_version like 1.1.0", ""))
        else:
            urls.append(core)
        exts = doc.get("stac_extensions", [])
        if isinstance(exts, list):
            for i, uri in enumerate(exts):
                if isinstance(uri, str) and uri.startswith(("https://", "http://")):
                    urls.append(canonical_url(uri))
                else:
                    problems.append(Problem("stac", "stac_extensions entries should be schema URLs (a short name cannot be validated)", json_pointer("stac_extensions", i), "warning"))
        urls += [self.schema_url(r) for r in extra]
        return list(dict.fromkeys(urls)), problems

    # -------------------------------------------------------------- checks

    def _extension_checks(self, uri: str):
        if self._checks is None:
            self._checks = {}
            for ext in all_extensions():
                if ext.schema_uri and type(ext).check is not Extension.check:
                    self._checks[canonical_url(ext.schema_uri)] = ext
        return self._checks.get(uri)

    def schema_check(self, doc: dict, extra: Iterable[str] = ()) -> DocResult:
        """Schemas only (the part stac-validator also does)."""
        urls, problems = self.schemas_for(doc, extra)
        unavailable: dict[str, str] = {}
        for url in urls:
            v = self.compiled(url)
            if isinstance(v, SchemaUnavailable):
                unavailable[url] = v.why if v.url == url else f"{v.url}: {v.why}"
                continue
            if v.is_valid(doc):
                continue
            for err in v.iter_errors(doc):
                for leaf in _descend(err):
                    problems.append(Problem(url, short_message(leaf), json_pointer(*leaf.instance_path)))
        return _result(problems, unavailable, tuple(urls))

    def check(self, doc: dict, extra: Iterable[str] = (), path: str | None = None, root: str | None = None) -> DocResult:
        result = self.schema_check(doc, extra)
        problems = list(result.problems)
        for uri in doc.get("stac_extensions") or []:
            ext = self._extension_checks(canonical_url(uri)) if isinstance(uri, str) else None
            if ext is not None:
                problems += ext.check(doc)
        if self.lint_enabled:
            problems += lint(doc, path, root)
        return _result(_dedupe(problems), result.unavailable, result.schemas)

    def fingerprint(self, urls: Iterable[str]) -> str:
        """Changes when any of these schemas (or what they reference) changes. Computed once
        per validator: schemas are read once per build step, not edited during it."""
        urls = tuple(urls)
        got = self._fingerprints.get(urls)
        if got is None:
            got = self._fingerprints[urls] = self._fingerprint(urls)
        return got

    def _fingerprint(self, urls: tuple[str, ...]) -> str:
        plain = [u for u in urls if not u.startswith("file:")]
        files = []
        for u in urls:
            if u.startswith("file:"):
                try:
                    files.append([u, digest_obj(self._file_schema(u))])
                except SchemaUnavailable:
                    files.append([u, None])
        return digest_obj([VALIDATOR_VERSION, self.store.fingerprint(plain), files, self.lint_enabled])


def _dedupe(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def _result(problems: list[Problem], unavailable: dict[str, str], schemas: tuple[str, ...]) -> DocResult:
    if any(p.severity == "error" for p in problems):
        status = "invalid"
    elif unavailable:
        status = "schema_unavailable"
    else:
        status = "valid"
    return DocResult(status, problems, unavailable, schemas)


# --------------------------------------------------------------------------- report


@dataclass
class Report:
    checked: int = 0
    valid: int = 0
    invalid: int = 0
    schema_unavailable: int = 0
    groups: dict = field(default_factory=dict)  # (severity, schema, message) -> [count, examples]
    unavailable: dict = field(default_factory=dict)  # url -> [count, why]
    duplicates: dict = field(default_factory=dict)  # (collection, id) -> first path

    def add(self, item_id: str | None, path: str | None, result: DocResult) -> None:
        self.checked += 1
        setattr(self, result.status, getattr(self, result.status) + 1)
        for p in result.problems:
            g = self.groups.setdefault((p.severity, p.schema, p.message), [0, []])
            g[0] += 1
            if len(g[1]) < EXAMPLES_PER_GROUP:
                g[1].append({"id": item_id, "path": path, "pointer": p.pointer})
        for url, why in result.unavailable.items():
            u = self.unavailable.setdefault(url, [0, why])
            u[0] += 1

    def examples_full(self, result: DocResult) -> bool:
        """Whether every group of ``result``'s problems has its examples already (after it was added)."""
        return all(len(self.groups[(p.severity, p.schema, p.message)][1]) >= EXAMPLES_PER_GROUP for p in result.problems)

    def add_many(self, result: DocResult, n: int) -> None:
        """``n`` more documents with a result added before, whose groups have their examples:
        the same counts as adding each, without the work per document."""
        self.checked += n
        setattr(self, result.status, getattr(self, result.status) + n)
        for p in result.problems:
            self.groups[(p.severity, p.schema, p.message)][0] += n
        for url in result.unavailable:
            self.unavailable[url][0] += n

    def add_identity(self, collection: str | None, item_id: str | None, path: str | None, status: str) -> None:
        """Track item ids; a second item with the same (collection, id) is invalid."""
        if item_id is None:
            return
        key = (collection, item_id)
        first = self.duplicates.get(key)
        if first is None:
            self.duplicates[key] = path
            return
        if status != "invalid":
            setattr(self, status, getattr(self, status) - 1)
            self.invalid += 1
        g = self.groups.setdefault(("error", "lint:duplicate-id", f"duplicate item id in collection {collection}"), [0, []])
        g[0] += 1
        if len(g[1]) < EXAMPLES_PER_GROUP:
            g[1].append({"id": item_id, "path": path, "pointer": "/id", "first": first})

    def merge(self, other: "Report") -> None:
        for k in ("checked", "valid", "invalid", "schema_unavailable"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for key, (count, examples) in other.groups.items():
            g = self.groups.setdefault(key, [0, []])
            g[0] += count
            g[1] = (g[1] + examples)[:EXAMPLES_PER_GROUP]
        for url, (count, why) in other.unavailable.items():
            u = self.unavailable.setdefault(url, [0, why])
            u[0] += count

    @property
    def warnings(self) -> int:
        return sum(c for (sev, _, _), (c, _) in self.groups.items() if sev == "warning")

    def ok(self, strict: bool = False) -> bool:
        if self.invalid:
            return False
        return not strict or (not self.schema_unavailable and not self.warnings)

    def to_json(self) -> dict:
        def groups(sev: str) -> list:
            rows = [
                {"schema": schema, "message": msg, "count": count, "examples": examples}
                for (s, schema, msg), (count, examples) in self.groups.items()
                if s == sev
            ]
            return sorted(rows, key=lambda r: (-r["count"], r["schema"], r["message"]))

        return {
            "checked": self.checked,
            "valid": self.valid,
            "invalid": self.invalid,
            "schema_unavailable": self.schema_unavailable,
            "errors": groups("error"),
            "warnings": groups("warning"),
            "unavailable_schemas": [
                {"url": url, "why": why, "documents": count} for url, (count, why) in sorted(self.unavailable.items())
            ],
        }


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class Target:
    """One file to validate: its path on disk, its path inside a tree (for link checks), the
    tree root, and custom schemas that apply to it."""

    file: str
    rel: str | None = None
    root: str | None = None
    extra: tuple[str, ...] = ()


def read_documents(file: str, data: bytes | OSError | None = None) -> Iterator[tuple[str, dict | None, str | None]]:
    """(location, document, error) of a .json file (one document, or a FeatureCollection's
    features) or an .ndjson file (one per line); ``data``: its bytes, when already read."""
    if data is None:
        data = read_file(file)
    if isinstance(data, OSError):
        yield file, None, f"cannot read: {data.strerror}"
        return
    if file.endswith((".ndjson", ".jsonl")):
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield f"{file}:{n}", None, f"not valid JSON: {exc}"
                continue
            yield f"{file}:{n}", doc, None if isinstance(doc, dict) else "not a JSON object"
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield file, None, f"not valid JSON: {exc}"
        return
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        for i, feat in enumerate(doc["features"]):
            yield f"{file}#/features/{i}", feat, None if isinstance(feat, dict) else "not a JSON object"
        return
    yield file, doc, None if isinstance(doc, dict) else "not a JSON object"


@dataclass(frozen=True)
class Subtree:
    """A directory of a tree, walked (sorted, like :func:`collect_targets`) by the worker that
    validates its files, so a large tree is listed in parallel and never held as one list."""

    dir: str
    root: str
    tree: bool = True  # a STAC tree (a catalog.json or collection.json at its root): links are checked against it


_DOC_SUFFIXES = (".json", ".geojson", ".ndjson", ".jsonl")


def _listing(d: str) -> tuple[list[str], list[str]]:
    """Sorted (document file names, sub-directory names) of a directory."""
    files: list[str] = []
    dirs: list[str] = []
    try:
        with os.scandir(d) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if not e.name.startswith("."):
                        dirs.append(e.name)
                elif e.name.endswith(_DOC_SUFFIXES) and e.name != "manifest.json":
                    files.append(e.name)
    except OSError:
        pass
    files.sort()
    dirs.sort()
    return files, dirs


def _target(d: str, name: str, root: str, tree: bool = True) -> Target:
    full = os.path.join(d, name)
    rel = full[len(root) + 1 :] if full.startswith(root + os.sep) else os.path.relpath(full, root)
    return Target(full, rel.replace(os.sep, "/"), root if tree else None)


def walk_targets(sub: Subtree) -> Iterator[Target]:
    """The files of a subtree in order: a directory's files, then its sub-directories."""
    stack = [sub.dir]
    while stack:
        d = stack.pop()
        files, dirs = _listing(d)
        for f in files:
            yield _target(d, f, sub.root, sub.tree)
        stack += [os.path.join(d, x) for x in reversed(dirs)]


def _file_of(t: Target) -> str:
    return t.file


def _validate_chunk(args: tuple) -> tuple[Report, list, list]:
    validator, units, keep, identities = args
    report = Report()
    idents: list[tuple] = []
    kept: list[tuple] = []
    targets = itertools.chain.from_iterable(walk_targets(u) if isinstance(u, Subtree) else (u,) for u in units)
    for batch in read_ahead(targets, _file_of, READ_BATCH):
        for t, data in batch:
            for loc, doc, error in read_documents(t.file, data):
                if doc is None:
                    result = DocResult("invalid", [Problem("json", error or "unreadable", "")])
                    report.add(None, loc, result)
                    continue
                result = validator.check(doc, t.extra, t.rel, t.root)
                item_id = doc.get("id") if isinstance(doc.get("id"), str) else None
                report.add(item_id, loc, result)
                if identities and doc.get("type") == "Feature":
                    idents.append((doc.get("collection"), item_id, loc, result.status))
                if keep:
                    kept.append((t.file, result.status, result.to_row(), result.schemas))
    return report, idents, kept


def _chunks(units: list, jobs: int) -> list[list]:
    """Consecutive runs of units, about ``jobs * 8`` of them; a subtree counts as many files."""
    weight = lambda u: PARALLEL_MIN // 4 if isinstance(u, Subtree) else 1  # noqa: E731
    total = sum(weight(u) for u in units)
    size = max(500, total // (jobs * 8))
    out: list[list] = [[]]
    filled = 0
    for u in units:
        if filled >= size:
            out.append([])
            filled = 0
        out[-1].append(u)
        filled += weight(u)
    return [c for c in out if c]


def validate_targets(
    validator: Validator, targets: list[Target | Subtree], jobs: int = 1, keep: bool = False, identities: bool = True, pool: ProcessPoolExecutor | None = None
) -> tuple[Report, list]:
    """Validate files and subtrees (in ``jobs`` processes when there are many; in ``pool``
    when given). Returns the report and, with ``keep``, (file, status, result row, schema
    urls) for every document. ``identities`` reports an item id seen twice in a collection
    (callers whose ids are unique by construction skip that table of every id)."""
    if jobs <= 1 or (len(targets) < PARALLEL_MIN and not any(isinstance(t, Subtree) for t in targets)):
        parts = [_validate_chunk((validator, targets, keep, identities))]
    else:
        work = [(validator, c, keep, identities) for c in _chunks(targets, jobs)]
        with contextlib.nullcontext(pool) if pool is not None else ProcessPoolExecutor(max_workers=jobs) as workers:
            parts = list(workers.map(_validate_chunk, work))
    report = Report()
    kept: list = []
    for part, idents, rows in parts:
        report.merge(part)
        kept += rows
        for coll, item_id, loc, status in idents:
            report.add_identity(coll, item_id, loc, status)
    return report, kept


def _split(root: str, want: int, tree: bool = True) -> list[Target | Subtree]:
    """A tree as files and subtrees in walk order: directories are opened level by level
    until there are ``want`` subtrees to hand out, or none left. A tree with fewer than
    ``PARALLEL_MIN`` files comes back as its files (validated in this process)."""
    small = list(itertools.islice(walk_targets(Subtree(root, root, tree)), PARALLEL_MIN))
    if len(small) < PARALLEL_MIN:
        return small  # type: ignore[return-value]
    units: list[Target | Subtree] = [Subtree(root, root, tree)]
    while 0 < sum(isinstance(u, Subtree) for u in units) < want:
        opened: list[Target | Subtree] = []
        for u in units:
            if isinstance(u, Subtree):
                files, dirs = _listing(u.dir)
                opened += [_target(u.dir, f, root, tree) for f in files]
                opened += [Subtree(os.path.join(u.dir, d), root, tree) for d in dirs]
            else:
                opened.append(u)
        units = opened
    return units


def collect_targets(paths: list[str], jobs: int = 1) -> list[Target | Subtree]:
    """Files and subtrees of the given paths, in sorted walk order (JSON/NDJSON only). With
    ``jobs`` > 1, a large directory is handed out as subtrees the workers walk themselves."""
    out: list[Target | Subtree] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            root = str(path).rstrip(os.sep) or os.sep
            tree = any((path / name).is_file() for name in ("catalog.json", "collection.json"))  # else loose files
            if jobs <= 1:
                out += walk_targets(Subtree(root, root, tree))
            else:
                out += _split(root, jobs * 16, tree)
        else:
            out.append(Target(str(path)))
    return out
