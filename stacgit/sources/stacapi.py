"""Fetch items from a STAC API: robust HTTP, time windows fetched concurrently, guarded paging.

Streaming: each window's items are handed to a callback page by page (never collected in
memory here). Everything that can go wrong upstream is expected:

* every request has a timeout; connection errors, timeouts, truncated JSON and HTTP 408, 429,
  500, 502, 503, 504 are retried (GET and POST) with exponential backoff and jitter, honouring
  ``Retry-After``; other statuses fail the window at once;
* requests to one host share a token bucket (``rate`` per second) and a concurrency limit;
* paging follows ``next`` links (GET href, or POST with ``body``, ``merge: true`` merged into the
  previous body); a repeated page or ``next`` link is a loop and fails the window; pages are
  capped; items are de-duplicated by id; ``numberMatched`` (when given) is checked;
* a window whose ``numberMatched`` exceeds ``max_window_items`` is split in two (bisection).

Secrets: header values come from environment variables, are only put on requests, and never
appear in errors (which name the URL and the status, never headers).

HTTP itself (rate limits, retries, redirects, secrets) is ``sources.http``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urljoin

import orjson

from stacgit.geo import coords_bbox
from stacgit.sources.http import FetchError, Http, retry_after, show


RECENT_PAGES = 8
"""A window drops items whose id came in one of its last RECENT_PAGES pages (offset paging
over changing data repeats items across a page boundary). Repeats further apart are dropped
when the snapshot's partitions are written; this keeps a window's memory bounded."""


@dataclass(frozen=True)
class ApiQuery:
    """What to fetch from one STAC API collection (the ``source:`` of a stac-api collection)."""

    url: str
    collection: str
    method: str = "auto"  # GET: /collections/{id}/items; POST: /search; auto: GET, POST if GET fails
    datetime: str | None = None
    bbox: tuple[float, ...] | None = None
    intersects: dict | None = None
    ids: tuple[str, ...] | None = None
    cql2: object = None
    query: dict | None = None
    page_size: int = 250
    window: str = "month"
    max_window_items: int = 50_000
    concurrency: int = 4
    rate: float = 20.0
    timeout: float = 30.0
    retries: int = 5
    backoff: float = 0.5  # seconds before the first retry; doubles each time, with jitter
    max_pages: int = 10_000
    headers: dict[str, str] = field(default_factory=dict)  # header name -> environment variable
    profile: str | None = None
    numeric: tuple[str, ...] = ()

    @classmethod
    def from_source(cls, api: dict) -> "ApiQuery":
        kw = dict(api)
        if "bbox" in kw:
            kw["bbox"] = tuple(kw["bbox"])
        if "ids" in kw:
            kw["ids"] = tuple(kw["ids"])
        if "numeric" in kw:
            kw["numeric"] = tuple(kw["numeric"])
        kw["headers"] = {k: v["env"] for k, v in (kw.get("headers") or {}).items()}
        q = cls(**kw)
        if q.profile == "cmr":  # CMR-STAC: capped pages, GET + cursor next links, bbox not polygons
            q = _replace(q, page_size=min(q.page_size, 2000), method="GET" if q.method == "auto" else q.method)
            if q.intersects is not None and q.bbox is None:
                q = _replace(q, bbox=tuple(coords_bbox(q.intersects)), intersects=None)
        return q

    def describe(self) -> dict:
        """The query as recorded in snapshot.json: no secrets (header names and variable names only)."""
        out = {k: v for k, v in self.__dict__.items() if v not in (None, (), {}) and k not in ("headers",)}
        if self.headers:
            out["headers"] = {k: {"env": v} for k, v in sorted(self.headers.items())}
        for k in ("bbox", "ids", "numeric"):
            if k in out:
                out[k] = list(out[k])
        return out


def _replace(q: ApiQuery, **kw) -> ApiQuery:
    return ApiQuery(**{**q.__dict__, **kw})


class WindowTooBig(Exception):
    """A window matches more items than ``max_window_items``: split it and fetch the halves."""


@dataclass(frozen=True)
class Window:
    start: datetime | None
    end: datetime | None

    @property
    def key(self) -> str:
        if self.start is None and self.end is None:
            return "all"
        return f"{_fmt(self.start) if self.start else '..'}_{_fmt(self.end) if self.end else '..'}".replace(":", "")

    @property
    def datetime(self) -> str | None:
        if self.start is None and self.end is None:
            return None
        return f"{_fmt(self.start) if self.start else '..'}/{_fmt(self.end) if self.end else '..'}"

    def halves(self) -> tuple["Window", "Window"] | None:
        if self.start is None or self.end is None or self.end - self.start < timedelta(seconds=2):
            return None
        mid = self.start + (self.end - self.start) / 2
        mid = mid.replace(microsecond=0)
        return Window(self.start, mid), Window(mid + timedelta(seconds=1), self.end)


def _fmt(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> datetime | None:
    if value in ("", ".."):
        return None
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def split_windows(datetime_range: str | None, window: str) -> list[Window]:
    """Windows covering the configured range (inclusive ends, one second apart)."""
    if not datetime_range:
        return [Window(None, None)]
    if "/" in datetime_range:
        a, b = datetime_range.split("/", 1)
        start, end = _parse(a), _parse(b)
        if end is not None and len(b) == 10:  # a date: the whole day
            end = end + timedelta(days=1) - timedelta(seconds=1)
    else:
        start = end = _parse(datetime_range)
    if window == "none" or start is None or end is None:
        return [Window(start, end)]
    out = []
    cur = start
    while cur <= end:
        if window == "year":
            nxt = cur.replace(year=cur.year + 1, month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        elif window == "month":
            nxt = (cur.replace(day=1, hour=0, minute=0, second=0, microsecond=0) + timedelta(days=32)).replace(day=1)
        else:
            nxt = cur.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        out.append(Window(cur, min(end, nxt - timedelta(seconds=1))))
        cur = nxt
    return out


def _search_body(q: ApiQuery, w: Window) -> dict:
    body: dict = {"collections": [q.collection], "limit": q.page_size}
    if w.datetime:
        body["datetime"] = w.datetime
    if q.bbox:
        body["bbox"] = list(q.bbox)
    if q.intersects:
        body["intersects"] = q.intersects
    if q.ids:
        body["ids"] = list(q.ids)
    if q.cql2 is not None:
        body["filter"] = q.cql2
        body["filter-lang"] = "cql2-text" if isinstance(q.cql2, str) else "cql2-json"
    if q.query:
        body["query"] = q.query
    return body


def _items_params(q: ApiQuery, w: Window) -> dict:
    params: dict = {"limit": q.page_size}
    if w.datetime:
        params["datetime"] = w.datetime
    if q.bbox:
        params["bbox"] = ",".join(str(v) for v in q.bbox)
    if q.ids:
        params["ids"] = ",".join(q.ids)
    if isinstance(q.cql2, str):
        params["filter"] = q.cql2
        params["filter-lang"] = "cql2-text"
    return params


def _can_get(q: ApiQuery) -> bool:
    return q.intersects is None and q.query is None and (q.cql2 is None or isinstance(q.cql2, str))


@dataclass
class WindowResult:
    window: Window
    items: int = 0
    pages: int = 0
    matched: int | None = None
    error: str | None = None
    url: str = ""
    notes: list[str] = field(default_factory=list)  # workarounds applied, for the report


PageSink = Callable[[list[dict]], Awaitable[None] | None]


async def fetch_window(http: Http, q: ApiQuery, w: Window, method: str, sink: PageSink) -> WindowResult:
    """Page through one window; hand each page's new items (not repeated from the last
    ``RECENT_PAGES`` pages) to ``sink``. Raises WindowTooBig
    (before any item is handed over) when the first page reports too many matches."""
    root = q.url.rstrip("/")
    res = WindowResult(w)
    if method == "GET":
        url, params, body = f"{root}/collections/{q.collection}/items", _items_params(q, w), None
        req_method = "GET"
    else:
        url, params, body = f"{root}/search", None, _search_body(q, w)
        req_method = "POST"
    res.url = show(url, params)
    recent: deque[set[str]] = deque(maxlen=RECENT_PAGES)  # ids of the last pages: bounded memory
    seen_links: set[bytes] = set()
    seen_pages: set[int] = set()
    while True:
        if res.pages >= q.max_pages:
            raise FetchError(f"{res.url}: more than {q.max_pages} pages (raise max_pages, or narrow the window)")
        try:
            page = await http.json(req_method, url, params, body)
        except FetchError as exc:
            # Planetary-Computer-style: a POST next link to the API root, which answers 405;
            # the search endpoint takes the same body (pystac-client does the same)
            if not (exc.status == 405 and req_method == "POST" and res.pages and url.rstrip("/") != f"{root}/search"):
                raise
            note = f"next link POST {url} answered 405: sent to {root}/search instead"
            if note not in res.notes:
                res.notes.append(note)
            url = f"{root}/search"
            page = await http.json(req_method, url, params, body)
        res.pages += 1
        features = page.get("features")
        if not isinstance(features, list):
            raise FetchError(f"{show(url, params)}: the response has no 'features' list")
        if res.pages == 1 and isinstance(page.get("numberMatched"), int):
            res.matched = page["numberMatched"]
            if res.matched > q.max_window_items and w.halves() is not None:
                raise WindowTooBig()
        fingerprint = hash(orjson.dumps([f.get("id") if isinstance(f, dict) else None for f in features]))
        if features and fingerprint in seen_pages:
            raise FetchError(f"{show(url, params)}: the same page came back again (looping next links)")
        seen_pages.add(fingerprint)
        fresh, ids = [], set()
        for f in features:
            fid = f.get("id") if isinstance(f, dict) else None
            if isinstance(fid, str):
                if fid in ids or any(fid in r for r in recent):
                    continue
                ids.add(fid)
            fresh.append(f)
        recent.append(ids)
        if fresh:
            out = sink(fresh)
            if out is not None:
                await out
        res.items += len(fresh)
        nxt = next((l for l in page.get("links") or [] if isinstance(l, dict) and l.get("rel") == "next" and l.get("href")), None)
        if nxt is None or not features:
            break
        link_method = (nxt.get("method") or "GET").upper()
        href = urljoin(show(url, params), nxt["href"])  # a relative next href is relative to the page
        if link_method == "POST":
            new_body = nxt.get("body") if isinstance(nxt.get("body"), dict) else {}
            body = {**(body or {}), **new_body} if nxt.get("merge") else (new_body or body)
            url, params, req_method = href, None, "POST"
        else:
            url, params, body, req_method = href, None, None, "GET"
        key = orjson.dumps([req_method, url, body], option=orjson.OPT_SORT_KEYS)
        if key in seen_links:
            raise FetchError(f"{url}: next link repeats an earlier request (looping next links)")
        seen_links.add(key)
    if res.matched is not None and res.matched != res.items:
        raise FetchError(f"{res.url}: numberMatched says {res.matched} items, got {res.items}")
    return res


async def probe_method(http: Http, q: ApiQuery, w: Window) -> str:
    """The paging method for this source: configured, or GET items when it works, else POST."""
    if q.method in ("GET", "POST"):
        return q.method
    if _can_get(q):
        try:
            params = {**_items_params(q, w), "limit": 1}
            await http.json("GET", f"{q.url.rstrip('/')}/collections/{q.collection}/items", params)
            return "GET"
        except FetchError:
            pass
    return "POST"


def iter_items(query: ApiQuery, env: dict[str, str] | None = None, transport=None, buffer_pages: int = 8):
    """Stream the query's items as plain dicts (the windows run concurrently in a background
    thread; at most ``buffer_pages`` pages wait in memory). Raises FetchError if a window fails.

        from stacgit.sources.stacapi import ApiQuery, iter_items
        for item in iter_items(ApiQuery(url="https://...", collection="c", datetime="2024-01-01/2024-01-31")):
            ...
    """
    import os
    import queue as _queue
    import threading

    pages: _queue.Queue = _queue.Queue(maxsize=buffer_pages)
    done = object()

    async def produce() -> None:
        http = Http(query, dict(os.environ) if env is None else env, transport)
        try:
            windows = split_windows(query.datetime, query.window)
            method = await probe_method(http, query, windows[0])
            todo = list(windows)
            sem = asyncio.Semaphore(max(1, query.concurrency))
            loop = asyncio.get_running_loop()

            async def one(w: Window) -> None:
                async with sem:
                    try:
                        await fetch_window(http, query, w, method, lambda items: loop.run_in_executor(None, pages.put, list(items)))
                    except WindowTooBig:
                        a, b = w.halves()
                        await asyncio.gather(one(a), one(b))

            await asyncio.gather(*(one(w) for w in todo))
        finally:
            await http.close()

    error: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(produce())
        except BaseException as exc:  # handed to the consumer below
            error.append(exc)
        finally:
            pages.put(done)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while True:
        page = pages.get()
        if page is done:
            break
        yield from page
    thread.join()
    if error:
        raise error[0]


__all__ = ["ApiQuery", "FetchError", "Http", "Window", "WindowTooBig", "fetch_window", "iter_items", "probe_method", "retry_after", "split_windows"]
