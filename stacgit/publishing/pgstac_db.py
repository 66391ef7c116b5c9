"""``stacgit publish --to postgresql://...``: bring a pgstac database to exactly the built catalog.

What was last published to a database is kept in the database itself (schema ``stacgit``: the
sha256 of every item's file as the build's ``manifest.json`` gives it, and a digest of every
collection), so a publish compares two lists of digests, like the S3 target's two manifests, and
reads only the items that changed; it sends them in that order: collections first (their document and ``partition_trunc``, from the collection's GeoParquet
``partition``), then per collection the items deleted, changed (deleted and inserted again, so an
item whose datetime moved to another partition is never left twice) and added.

Each collection's changes are one transaction (with the rows that record them), so ``search()``
sees a collection either as it was or as it is in the build, never half way, and a publish killed
at any point is finished by running it again. Items go in through pypgstac's loader (or pgstac's
``items_staging`` table), one collection at a time: never two loaders on one partition.

Writes by anyone else are counted per collection by a trigger on pgstac's ``items`` and
``collections`` (our own transactions set ``stacgit.publishing``): a collection of ours changed
since our last publish is refused unless ``--force``, which, like ``--verify``, compares every item
in the database with the build and repairs what differs. Other writers' collections are theirs.

The DSN's password is never printed: messages name the database as ``user@host:port/db``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import orjson

from stacgit.errors import ConfigError, PublishError, StalePublishError
from stacgit.exports import pgstac_line
from stacgit.feed import item_key
from stacgit.project import Project
from stacgit.stores import check_rel
from stacgit.writers import read_manifest

DDL = """
CREATE SCHEMA IF NOT EXISTS stacgit;
CREATE TABLE IF NOT EXISTS stacgit.items (catalog text, collection text, id text, digest text, PRIMARY KEY (catalog, collection, id));
CREATE TABLE IF NOT EXISTS stacgit.collections (catalog text, collection text, digest text, writes_seen bigint NOT NULL,
    PRIMARY KEY (catalog, collection));
CREATE TABLE IF NOT EXISTS stacgit.publishes (catalog text PRIMARY KEY, generation int NOT NULL, commit text);
ALTER TABLE stacgit.publishes ADD COLUMN IF NOT EXISTS format int;
CREATE TABLE IF NOT EXISTS stacgit.foreign_writes (collection text PRIMARY KEY, n bigint NOT NULL);
CREATE OR REPLACE FUNCTION stacgit.count_foreign_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    r jsonb := CASE WHEN TG_OP = 'DELETE' THEN to_jsonb(OLD) ELSE to_jsonb(NEW) END;
BEGIN
    INSERT INTO stacgit.foreign_writes VALUES (coalesce(r->>'collection', r->>'id'), 1)
        ON CONFLICT (collection) DO UPDATE SET n = stacgit.foreign_writes.n + 1;
    RETURN NULL;
END $$;
"""
"""Idempotent; run before each publish."""

TRIGGERS = {
    "items": """CREATE TRIGGER stacgit_foreign_write AFTER INSERT OR UPDATE OR DELETE ON pgstac.items FOR EACH ROW
    WHEN (current_setting('stacgit.publishing', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION stacgit.count_foreign_write()""",
    "collections": """CREATE TRIGGER stacgit_foreign_write AFTER INSERT OR UPDATE OR DELETE ON pgstac.collections FOR EACH ROW
    WHEN (current_setting('stacgit.publishing', true) IS DISTINCT FROM 'on') EXECUTE FUNCTION stacgit.count_foreign_write()""",
}
"""Created once, by a role that owns pgstac's tables: creating a trigger locks the table (and every
partition of ``items``) against readers, so it is not redone on each publish."""


def shown(dsn: str) -> str:
    """The database as messages name it: no password, ever."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        d = conninfo_to_dict(dsn)
    except Exception:  # noqa: BLE001 - a DSN that does not parse is named without its text
        return "the database"
    return f"{d.get('user') or ''}{'@' if d.get('user') else ''}{d.get('host') or 'localhost'}:{d.get('port') or 5432}/{d.get('dbname') or ''}"


def _scrub(text: str, dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        password = conninfo_to_dict(dsn).get("password")
    except Exception:  # noqa: BLE001
        password = None
    return text.replace(password, "***") if password else text


FILES_OR_PIECES = 8
"""Inserting ``n`` items of a collection of ``N``: their own files are read when ``n`` times this is
less than ``N``; otherwise the collection's pgstac files are read through, which costs about
this much less per item (one sequential read, compact lines) but takes every item's time."""


@dataclass
class BuiltCollection:
    id: str
    doc: bytes  # the line of pgstac/collections.ndjson
    partition_trunc: str | None
    pieces: list[Path]
    items: dict[str, tuple[str, str]]  # id -> (sha256 of the item's file, its path), from manifest.json
    out_dir: Path

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.doc + (self.partition_trunc or "").encode()).hexdigest()

    def pgstac_items(self, wanted: set[str] | None = None) -> Iterator[dict]:
        """Every item (or the ``wanted`` ones) as pgstac takes it: read from their own files when
        few (``FILES_OR_PIECES``), else from the build's pgstac files, in their order."""
        if wanted is not None and len(wanted) * FILES_OR_PIECES < len(self.items):
            for item_id in sorted(wanted):
                rel = check_rel(self.items[item_id][1], str(self.out_dir / "manifest.json"))
                yield orjson.loads(pgstac_line(orjson.loads((self.out_dir / rel).read_bytes())))
            return
        for piece in self.pieces:
            with open(piece, "rb") as f:
                for line in f:
                    item = orjson.loads(line)
                    if wanted is None or item["id"] in wanted:
                        yield item


@dataclass
class CollectionPlan:
    collection: str
    upsert: bool = False  # the collection document or its partitioning changed
    rewrite_record: bool = False  # --verify/--force: our record of the collection is written again whole
    delete: list[str] = field(default_factory=list)  # ids deleted (gone, or changed: inserted again)
    insert: list[str] = field(default_factory=list)  # ids inserted (new, or changed)
    changed: int = 0
    removed: bool = False  # the collection is gone from the build

    @property
    def empty(self) -> bool:
        return not (self.upsert or self.delete or self.insert or self.removed or self.rewrite_record)


def built_collections(project: Project, catalog: str) -> dict[str, BuiltCollection]:
    """The collections of a built catalog that have pgstac output, their items (from the build's
    manifest) and their pgstac files."""
    out_dir = project.build_dir / catalog
    docs = out_dir / "pgstac" / "collections.ndjson"
    try:
        files = read_manifest(out_dir)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise PublishError(f"{out_dir / 'manifest.json'}: not a stacgit build manifest: run stacgit build") from None
    if files is None or not (out_dir / "catalog.json").is_file():
        raise PublishError(f"{catalog}: nothing built; run `stacgit build` first")
    found: dict[str, BuiltCollection] = {}
    if not docs.is_file():
        return found
    cat = project.catalog(catalog)
    for line in docs.read_bytes().splitlines():
        coll_id = orjson.loads(line)["id"]
        spec = next((c for c in cat.collections if c.id == coll_id), None)
        partition = (spec.geoparquet or {}).get("partition") if spec else None
        pieces = sorted((out_dir / "pgstac" / coll_id).glob("*.ndjson"))
        found[coll_id] = BuiltCollection(coll_id, line, partition if partition in ("year", "month") else None, pieces, {}, out_dir)
    for rel, entry in files.items():
        key = item_key(rel)
        if key is not None and key[0] in found:
            found[key[0]].items[key[1]] = (entry["sha256"], rel)
    return found


def connect(dsn: str):
    import psycopg

    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise ConfigError(f"{shown(dsn)}: cannot connect: {_scrub(str(exc).strip().splitlines()[0], dsn)}") from None


def prepare(con, dsn: str) -> None:
    import psycopg

    try:
        con.execute("SELECT pgstac.get_version()")
    except psycopg.Error:
        raise PublishError(f"{shown(dsn)}: no pgstac schema (run `pypgstac migrate` first)") from None
    with con.transaction():
        con.execute("SELECT pg_advisory_xact_lock(hashtext('stacgit publish'))")
        con.execute(DDL)
        for table, create in TRIGGERS.items():
            if not con.execute("SELECT 1 FROM pg_trigger WHERE tgname='stacgit_foreign_write' AND tgrelid=%s::regclass",
                               (f"pgstac.{table}",)).fetchone():
                con.execute(create)


def foreign_writes(con) -> dict[str, int]:
    """Collection -> rows of it (items or the collection) written by others, ever."""
    return dict(con.execute("SELECT collection, n FROM stacgit.foreign_writes").fetchall())


RECORD_FORMAT = 2
"""What ``stacgit.items.digest`` holds: 2, the sha256 of the item's file as in the build's
manifest. (1, an earlier stacgit's, held the digest of its pgstac line: a publish over it
compares with the database like a first publish, and writes the record again.)"""


def last_publish(con, catalog: str) -> tuple[int, str | None, int | None] | None:
    """(generation, commit, record format) of the catalog's last publish to this database."""
    row = con.execute("SELECT generation, commit, format FROM stacgit.publishes WHERE catalog=%s", (catalog,)).fetchone()
    return tuple(row) if row else None


def published_items(con, catalog: str, collection: str) -> dict[str, str]:
    rows = con.execute("SELECT id, digest FROM stacgit.items WHERE catalog=%s AND collection=%s", (catalog, collection))
    return dict(rows.fetchall())


def published_collections(con, catalog: str) -> dict[str, tuple[str, int]]:
    """Collection -> (digest, foreign writes seen) as our last publish left it."""
    rows = con.execute("SELECT collection, digest, writes_seen FROM stacgit.collections WHERE catalog=%s", (catalog,))
    return {c: (d, w) for c, d, w in rows}


def database_items(con, collection: str) -> dict[str, str]:
    """Id -> digest (``stored_digest``) of each item of the collection as the database holds it
    (for --verify, --force and a first publish)."""
    rows = con.execute("SELECT i.id, pgstac.content_hydrate(i)::text FROM pgstac.items i WHERE i.collection=%s", (collection,))
    return {item_id: stored_digest(orjson.loads(text)) for item_id, text in rows}


def stored_digest(item: dict) -> str:
    """The digest of an item as pgstac gives it back: pgstac drops fields whose value is null
    (``"datetime": null`` beside a range, for one), so both sides are compared without them."""
    return hashlib.sha256(orjson.dumps(_without_nulls(item), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def plan_collection(con, catalog: str, built: BuiltCollection | None, coll_id: str, known_digest: str | None, check_database: bool) -> CollectionPlan:
    """What to change in one collection: from our record of the last publish (the sha256 of each
    item's file, as in the build's manifest) or (``check_database``: --verify, --force, a first
    publish) from the items the database really holds, compared with the build's."""
    plan = CollectionPlan(coll_id)
    if built is None:
        plan.removed = True
        return plan
    plan.upsert = plan.rewrite_record = known_digest != built.digest or check_database
    if check_database:
        held = database_items(con, coll_id)
        both = held.keys() & built.items.keys()
        same = {item["id"] for item in built.pgstac_items(both) if held[item["id"]] == stored_digest(item)} if both else set()
    else:
        held = published_items(con, catalog, coll_id)
        same = {item_id for item_id, digest in held.items() if built.items.get(item_id, (None,))[0] == digest}
    for item_id in built.items:
        if item_id in same:
            continue
        if item_id in held:
            plan.delete.append(item_id)
            plan.changed += 1
        plan.insert.append(item_id)
    plan.delete += sorted(held.keys() - built.items.keys())
    return plan


def apply_collection(con, catalog: str, built: BuiltCollection | None, plan: CollectionPlan) -> None:
    """One transaction: the collection, its deleted and inserted items, and our record of them."""
    with con.transaction():
        con.execute("SET LOCAL stacgit.publishing = 'on'")
        if plan.removed:
            con.execute("DELETE FROM pgstac.items WHERE collection=%s", (plan.collection,))
            if con.execute("SELECT 1 FROM pgstac.collections WHERE id=%s", (plan.collection,)).fetchone():
                con.execute("SELECT pgstac.delete_collection(%s)", (plan.collection,))
            con.execute("DELETE FROM stacgit.items WHERE catalog=%s AND collection=%s", (catalog, plan.collection))
            con.execute("DELETE FROM stacgit.collections WHERE catalog=%s AND collection=%s", (catalog, plan.collection))
            return
        assert built is not None
        if plan.upsert:
            con.execute("SELECT pgstac.upsert_collection(%s::jsonb)", (built.doc.decode(),))
            con.execute("UPDATE pgstac.collections SET partition_trunc=%s WHERE id=%s AND partition_trunc IS DISTINCT FROM %s",
                        (built.partition_trunc, plan.collection, built.partition_trunc))
        seen = con.execute("SELECT coalesce((SELECT n FROM stacgit.foreign_writes WHERE collection=%s), 0)", (plan.collection,)).fetchone()[0]
        con.execute("INSERT INTO stacgit.collections VALUES (%s, %s, %s, %s) ON CONFLICT (catalog, collection) DO UPDATE "
                    "SET digest=excluded.digest, writes_seen=excluded.writes_seen", (catalog, plan.collection, built.digest, seen))
        if plan.delete:
            con.execute("DELETE FROM pgstac.items WHERE collection=%s AND id = ANY(%s)", (plan.collection, plan.delete))
            con.execute("DELETE FROM stacgit.items WHERE catalog=%s AND collection=%s AND id = ANY(%s)", (catalog, plan.collection, plan.delete))
        if plan.rewrite_record:
            con.execute("DELETE FROM stacgit.items WHERE catalog=%s AND collection=%s", (catalog, plan.collection))
        if plan.insert or plan.rewrite_record:
            wanted = set(plan.insert)
            rows = [(catalog, plan.collection, i, sha) for i, (sha, _) in built.items.items() if i in wanted or plan.rewrite_record]
            if wanted:
                insert_items(con, built.pgstac_items(wanted))
            with con.cursor().copy("COPY stacgit.items (catalog, collection, id, digest) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)


def insert_items(con, items: Iterator[dict]) -> None:
    """Insert items (none of which the collection holds now) inside the caller's transaction.
    With pypgstac of the database's pgstac version, its loader does it (dehydrated in Python,
    copied into each partition: several times faster than pgstac's SQL path); otherwise pgstac's
    own ``items_staging`` table takes them, whatever its version."""
    loader = _loader(con)
    if loader is not None:
        from pypgstac.load import Methods

        loader.load_items(items, insert_mode=Methods.insert)
        return
    with con.cursor().copy("COPY pgstac.items_staging (content) FROM STDIN") as copy:
        for item in items:
            copy.write_row((orjson.dumps(item).decode(),))


def _loader(con):
    try:
        from pypgstac.db import PgstacDB
        from pypgstac.load import Loader
    except ImportError:
        return None
    loader = Loader(PgstacDB(connection=con, commit_on_exit=False))
    try:
        loader.check_version()
    except Exception:  # noqa: BLE001 - another pgstac version: pgstac's own SQL path
        return None
    return loader


@dataclass
class DatabasePublish:
    """What a publish to pgstac did (or, dry, would do), per catalog."""

    catalog: str
    target: str
    collections: list[CollectionPlan] = field(default_factory=list)
    generation: int | None = None
    commit: str | None = None

    def count(self, what: str) -> int:
        if what == "inserted":
            return sum(len(p.insert) - p.changed for p in self.collections)
        if what == "updated":
            return sum(p.changed for p in self.collections)
        if what == "deleted":
            return sum(len(p.delete) - p.changed for p in self.collections)
        return sum(1 for p in self.collections if getattr(p, what))

    def line(self, dry_run: bool) -> str:
        would = "would be " if dry_run else ""
        return (f"{self.catalog} -> {self.target}: items {would}inserted {self.count('inserted'):,}, updated {self.count('updated'):,}, "
                f"deleted {self.count('deleted'):,}; collections {would}written {self.count('upsert')}, removed {self.count('removed')}"
                + ("" if dry_run else f"; generation {self.generation}"))

    def to_json(self) -> dict:
        return {
            "catalog": self.catalog, "target": self.target,
            "items": {k: self.count(k) for k in ("inserted", "updated", "deleted")},
            "collections": {"written": self.count("upsert"), "removed": self.count("removed")},
            "generation": self.generation, "commit": self.commit,
        }


def publish_catalog(project: Project, catalog: str, dsn: str, *, dry_run: bool, force: bool, verify: bool, commit: str | None) -> DatabasePublish:
    con = connect(dsn)
    try:
        try:
            prepare(con, dsn)
            con.execute("SET search_path TO pgstac, public")
            return _publish(con, project, catalog, dsn, dry_run=dry_run, force=force, verify=verify, commit=commit)
        except Exception as exc:
            import psycopg

            if isinstance(exc, psycopg.Error):
                raise PublishError(f"{shown(dsn)}: {_scrub(str(exc).strip().splitlines()[0], dsn)}") from None
            raise
    finally:
        con.close()


def _publish(con, project: Project, catalog: str, dsn: str, *, dry_run: bool, force: bool, verify: bool, commit: str | None) -> DatabasePublish:
    built = built_collections(project, catalog)
    last = last_publish(con, catalog)
    writes = foreign_writes(con)
    known = published_collections(con, catalog)
    touched = sorted(c for c, (_, seen) in known.items() if writes.get(c, 0) != seen)
    if touched and not (force or verify):
        raise StalePublishError(
            f"{shown(dsn)}: collection {touched[0]}" + (f" (and {len(touched) - 1} more)" if len(touched) > 1 else "")
            + f" of {catalog} was changed by another writer since the last publish; --force (or --verify) puts it back to exactly the build"
        )
    # a first publish compares with what the database holds already; so does one over an older record
    check = verify or force or last is None or last[2] != RECORD_FORMAT
    done = DatabasePublish(catalog, shown(dsn), commit=commit)
    for coll_id in sorted(set(built) | set(known)):
        plan = plan_collection(con, catalog, built.get(coll_id), coll_id, (known.get(coll_id) or (None,))[0], check or coll_id in touched)
        if plan.empty:
            continue
        done.collections.append(plan)
        if not dry_run:
            apply_collection(con, catalog, built.get(coll_id), plan)
    generation = (last[0] if last else 0) + (0 if dry_run or (not done.collections and last) else 1)
    done.generation = generation
    if not dry_run:
        with con.transaction():
            con.execute("SET LOCAL stacgit.publishing = 'on'")
            con.execute(
                "INSERT INTO stacgit.publishes (catalog, generation, commit, format) VALUES (%s, %s, %s, %s) ON CONFLICT (catalog) "
                "DO UPDATE SET generation=excluded.generation, commit=excluded.commit, format=excluded.format",
                (catalog, generation, commit, RECORD_FORMAT),
            )
    return done


@dataclass
class DatabaseReport:
    """``stacgit publish --to postgresql://...``: one ``DatabasePublish`` per catalog."""

    dry_run: bool
    catalogs: list[DatabasePublish] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"dry_run": self.dry_run, "catalogs": [c.to_json() for c in self.catalogs]}

    def format(self) -> str:
        return "\n".join(c.line(self.dry_run) for c in self.catalogs)


def is_database(to: str) -> bool:
    return to.startswith(("postgresql://", "postgres://")) or to in ("pgstac", "postgresql:")


def database_dsn(to: str, env: dict) -> str:
    """``--to postgresql://...`` as given; ``--to pgstac``: ``PGSTAC_DSN``, else libpq's own
    environment (PGHOST, PGUSER, PGPASSWORD, ...)."""
    if to.startswith(("postgresql://", "postgres://")):
        return to
    return env.get("PGSTAC_DSN") or ""
