"""Exact HTTP edge cases of the STAC API client (httpx.MockTransport), windows, CMR profile."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from stacgit.snapshot import normalise, partition_of
from stacgit.sources.stacapi import ApiQuery, FetchError, Http, Window, WindowTooBig, fetch_window, retry_after, split_windows


def run(coro):
    return asyncio.run(coro)


def feature(i: str) -> dict:
    return {"type": "Feature", "id": i, "geometry": None, "properties": {"datetime": "2020-01-01T00:00:00Z"}}


def collect(handler, q: ApiQuery, method="POST", window=Window(None, None)):
    got: list[dict] = []

    async def go():
        http = Http(q, {}, httpx.MockTransport(handler))
        try:
            return await fetch_window(http, q, window, method, got.extend)
        finally:
            await http.close()

    return run(go()), got


def test_post_paging_merges_next_link_bodies_and_dedupes():
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append(body)
        page = body.get("token", 0)
        links = [{"rel": "next", "href": "http://api/search", "method": "POST", "merge": True, "body": {"token": page + 1}}] if page < 2 else []
        feats = [feature(f"i{page}"), feature("dup")]
        return httpx.Response(200, json={"features": feats, "links": links})

    q = ApiQuery(url="http://api", collection="c", retries=0)
    res, got = collect(handler, q)
    assert [f["id"] for f in got] == ["i0", "dup", "i1", "i2"]
    assert all(b["collections"] == ["c"] for b in bodies)  # merge:true kept the original body
    assert [b.get("token") for b in bodies] == [None, 1, 2]
    assert res.pages == 3 and res.items == 4


def test_retry_after_is_honoured_and_status_retried():
    calls = []

    def handler(request):
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        if len(calls) == 2:
            return httpx.Response(504)
        return httpx.Response(200, json={"features": [feature("a")], "links": []})

    q = ApiQuery(url="http://api", collection="c", retries=3, backoff=0.01)
    res, got = collect(handler, q, method="GET")
    assert len(calls) == 3 and [f["id"] for f in got] == ["a"]
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    assert 25 <= retry_after(format_datetime(when, usegmt=True)) <= 30
    assert retry_after("7") == 7 and retry_after("junk") is None and retry_after("99999") == 120


def test_client_errors_fail_at_once_without_secrets():
    calls = []

    def handler(request):
        calls.append(request)
        assert request.headers["X-Api-Key"] == "hunter2"
        return httpx.Response(403, text="forbidden")

    q = ApiQuery(url="http://api", collection="c", retries=5, headers={"X-Api-Key": "KEY_VAR"})

    async def go():
        http = Http(q, {"KEY_VAR": "hunter2"}, httpx.MockTransport(handler))
        try:
            await fetch_window(http, q, Window(None, None), "GET", lambda items: None)
        finally:
            await http.close()

    with pytest.raises(FetchError) as err:
        run(go())
    assert len(calls) == 1 and "HTTP 403" in str(err.value) and "hunter2" not in str(err.value)


def test_number_matched_mismatch_and_too_big_windows():
    def short(request):
        return httpx.Response(200, json={"features": [feature("a")], "numberMatched": 3, "links": []})

    with pytest.raises(FetchError, match="numberMatched says 3 items, got 1"):
        collect(short, ApiQuery(url="http://api", collection="c", retries=0))

    def big(request):
        return httpx.Response(200, json={"features": [feature("a")], "numberMatched": 10, "links": []})

    w = Window(datetime(2020, 1, 1, tzinfo=timezone.utc), datetime(2020, 1, 31, tzinfo=timezone.utc))
    with pytest.raises(WindowTooBig):
        collect(big, ApiQuery(url="http://api", collection="c", retries=0, max_window_items=5), window=w)
    a, b = w.halves()
    assert a.start == w.start and b.end == w.end and b.start - a.end == timedelta(seconds=1)


def test_windows_and_cmr_profile():
    ws = split_windows("2020-01-15/2020-03-10", "month")
    assert [w.datetime for w in ws] == [
        "2020-01-15T00:00:00Z/2020-01-31T23:59:59Z",
        "2020-02-01T00:00:00Z/2020-02-29T23:59:59Z",
        "2020-03-01T00:00:00Z/2020-03-10T23:59:59Z",
    ]
    assert split_windows(None, "month") == [Window(None, None)]
    assert len(split_windows("2020-01-01/2020-12-31", "none")) == 1
    q = ApiQuery.from_source({"url": "https://cmr.earthdata.nasa.gov/stac/LPCLOUD", "collection": "HLSS30_2.0", "profile": "cmr", "page_size": 5000,
                              "intersects": {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [2, 1], [0, 0]]]}})
    assert (q.page_size, q.method, q.bbox, q.intersects) == (2000, "GET", (0, 0, 2, 1), None)
    assert "headers" not in q.describe()


def test_normalise_and_partition():
    item, why = normalise({"id": "a", "geometry": None, "properties": {"datetime": "2020-05-01T10:00:00", "n": "5"}}, ("n",))
    assert why is None and item["properties"] == {"datetime": "2020-05-01T10:00:00Z", "n": 5}
    assert partition_of(item) == "2020-05"
    assert normalise({"id": "a/b", "properties": {}}, ())[1] == "item id 'a/b' contains a path separator"
    assert normalise({"id": "a", "geometry": None, "properties": {}}, ())[1].startswith("no datetime")
    bad = {"id": "a", "geometry": None, "properties": {"datetime": "2020/../../x:00Z"}}  # would name a partition outside the folder
    assert normalise(bad, ())[1] == "datetime '2020/../../x:00Z' is not an RFC 3339 time"
    undated = {"id": "x", "properties": {"start_datetime": None}}
    assert partition_of(undated).startswith("undated-")


def test_iter_items_streams_dicts_from_concurrent_windows():
    from stacgit.sources.stacapi import iter_items

    def handler(request: httpx.Request) -> httpx.Response:
        dt = request.url.params.get("datetime", "")
        month = dt[5:7]
        if request.url.params.get("limit") == "1":
            return httpx.Response(200, json={"features": [], "links": []})
        return httpx.Response(200, json={"features": [feature(f"{month}-{k}") for k in range(3)], "links": []})

    q = ApiQuery(url="http://api", collection="c", datetime="2020-01-01/2020-04-30", method="auto", retries=0)
    got = sorted(i["id"] for i in iter_items(q, {}, httpx.MockTransport(handler)))
    assert got == [f"{m:02d}-{k}" for m in range(1, 5) for k in range(3)]

    def broken(request):
        return httpx.Response(404, text="nope")

    with pytest.raises(FetchError, match="HTTP 404"):
        list(iter_items(ApiQuery(url="http://api", collection="c", method="GET", retries=0), {}, httpx.MockTransport(broken)))


def test_repeats_within_recent_pages_are_dropped_with_bounded_memory(monkeypatch):
    import stacgit.sources.stacapi as stacapi

    monkeypatch.setattr(stacapi, "RECENT_PAGES", 2)

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params.get("page", 0))
        links = [{"rel": "next", "href": f"http://api/collections/c/items?page={page + 1}"}] if page < 4 else []
        ids = {0: ["a", "b"], 1: ["b", "c"], 2: ["c", "b", "d"], 3: ["e"], 4: ["a", "f"]}[page]  # "a" again 4 pages later
        return httpx.Response(200, json={"features": [feature(i) for i in ids], "links": links})

    res, got = collect(handler, ApiQuery(url="http://api", collection="c", retries=0), method="GET")
    assert [f["id"] for f in got] == ["a", "b", "c", "d", "e", "a", "f"]
    assert res.items == 7  # the far repeat of "a" is left to the partition writer, which keeps one
