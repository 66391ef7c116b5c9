"""``stacgit publish --to postgresql://...``: bring a pgstac database to exactly the built catalog.

What was last published to a database is kept in the database itself (schema ``stacgit``: the
sha256 of every item's file as the build's ``manifest.json`` gives it, and a digest of every
collection), so a publish compares two lists of digests, like the S3 target's two manifests, and
reads only the items that changed (``pgstac_plan``).

Each collection is one transaction: its document and
``partition_trunc`` (from the collection's GeoParquet ``partition``), the items deleted, changed
(deleted and inserted again, so an item whose datetime moved to another partition is never left
twice) and added, and the rows that record them. So ``search()`` sees a collection either as it
was or as it is in the build, never half way; a publish killed at any point is finished by
running it again. Items go in through pypgstac's loader (or pgstac's ``items_staging`` table),
one collection after another, by one publisher at a time (a session lock on the database).

Writes by anyone else are counted per collection by a trigger on pgstac's ``items`` and
``collections`` (our own transactions set ``stacgit.publishing``): a collection of ours changed
since our last publish is refused unless ``--force``, which, like ``--verify``, compares every item
in the database with the build and repairs what differs. Other writers' collections are theirs.

The DSN's password is never printed: messages name the database as ``user@host:port/db``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import orjson

from stacgit.errors import ConfigError, PublishError, StalePublishError
from stacgit.project import Project
from stacgit.publishing.pgstac_plan import BuiltCollection, CollectionPlan, DatabasePublish, built_collections, plan_collection, stored_digest

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


def sync_collection(con, catalog: str, built: BuiltCollection | None, coll_id: str, known_digest: str | None, check_database: bool,
                    dry_run: bool) -> CollectionPlan:
    """Plan one collection from what the database holds now and (unless ``dry_run``) apply the
    plan, in one transaction. ``known_digest``: the collection's, as our last publish recorded it
    (read once for all collections; the publish lock keeps other publishers out meanwhile)."""
    with con.transaction():
        held = database_items(con, coll_id) if check_database else published_items(con, catalog, coll_id)
        plan = plan_collection(built, coll_id, known_digest, held, check_database)
        if not (plan.empty or dry_run):
            apply_collection(con, catalog, built, plan)
    return plan


def apply_collection(con, catalog: str, built: BuiltCollection | None, plan: CollectionPlan) -> None:
    """In the caller's transaction: the collection, its deleted and inserted items, and our
    record of them."""
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


@contextmanager
def _database(dsn: str) -> Iterator:
    """A connection whose driver errors become one line without the password."""
    import psycopg

    con = connect(dsn)
    try:
        con.execute("SET search_path TO pgstac, public")
        yield con
    except psycopg.Error as exc:
        raise PublishError(f"{shown(dsn)}: {_scrub(str(exc).strip().splitlines()[0], dsn)}") from None
    finally:
        con.close()


def publish_catalog(project: Project, catalog: str, dsn: str, *, dry_run: bool, force: bool, verify: bool, commit: str | None) -> DatabasePublish:
    """Bring the database to the built catalog, one collection at a time. Not in parallel, even
    for different collections: pgstac's partition upkeep deadlocks and loses items under
    concurrent loads (pgstac#222, #285), so one publisher holds the database's publish lock."""
    built = built_collections(project, catalog)
    with _database(dsn) as con:
        prepare(con, dsn)
        con.execute("SELECT pg_advisory_lock(hashtext('stacgit publish items'))")  # released when the connection ends, however
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
        plans = [sync_collection(con, catalog, built.get(c), c, (known.get(c) or (None,))[0], check or c in touched, dry_run)
                 for c in sorted(set(built) | set(known))]
        done = DatabasePublish(catalog, shown(dsn), commit=commit, collections=[p for p in plans if not p.empty])
        done.generation = (last[0] if last else 0) + (0 if dry_run or (not done.collections and last) else 1)
        if not dry_run:
            with con.transaction():
                con.execute("SET LOCAL stacgit.publishing = 'on'")
                con.execute(
                    "INSERT INTO stacgit.publishes (catalog, generation, commit, format) VALUES (%s, %s, %s, %s) ON CONFLICT (catalog) "
                    "DO UPDATE SET generation=excluded.generation, commit=excluded.commit, format=excluded.format",
                    (catalog, done.generation, commit, RECORD_FORMAT),
                )
    return done


def is_database(to: str) -> bool:
    return to.startswith(("postgresql://", "postgres://")) or to in ("pgstac", "postgresql:")


def database_dsn(to: str, env: dict) -> str:
    """``--to postgresql://...`` as given; ``--to pgstac``: ``PGSTAC_DSN``, else libpq's own
    environment (PGHOST, PGUSER, PGPASSWORD, ...)."""
    if to.startswith(("postgresql://", "postgres://")):
        return to
    return env.get("PGSTAC_DSN") or ""
