"""HTTP for remote sources: rate limits per host (a token bucket), retries that honour
``Retry-After``, redirects followed by hand so that secrets go only to the origin they belong
to, and error bodies scrubbed of every secret before anyone sees them."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import orjson

from stacgit.errors import SourceError

if TYPE_CHECKING:
    from stacgit.sources.stacapi import ApiQuery

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


_USER_AGENT = "stacgit (+https://github.com/stacgit)"


class FetchError(SourceError):
    """A request failed for good (after retries); names URL and reason, never headers."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TokenBucket:
    def __init__(self, rate: float):
        self.rate = max(rate, 0.001)
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                await asyncio.sleep((1 - self.tokens) / self.rate)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), capped at 120."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), 120.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, min((when - datetime.now(timezone.utc)).total_seconds(), 120.0))


MAX_REDIRECTS = 5


def origin(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of a URL: the party a secret header belongs to."""
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class Http:
    """One httpx.AsyncClient per snapshot, with per-host rate limit, concurrency and retries.

    Secret headers (``headers:`` of the source, read from environment variables) go only to
    the source's own origin: a ``next`` link or a redirect to another host gets none, so
    redirects are followed here, not by httpx (which keeps custom headers across hosts). Their
    values never appear in an error: a server that echoes one gets it replaced by ``***``."""

    def __init__(self, query: ApiQuery, env: dict[str, str], transport=None):
        import httpx

        missing = [v for v in query.headers.values() if not env.get(v)]
        if missing:
            raise SourceError(f"environment variable {missing[0]} (for a request header) is not set")
        self.secrets = {name: env[var] for name, var in query.headers.items()}
        self.origin = origin(query.url)
        self._httpx = httpx
        self.client = httpx.AsyncClient(
            headers={"User-Agent": _USER_AGENT, "Accept": "application/geo+json, application/json"},
            timeout=httpx.Timeout(query.timeout),
            transport=transport,
            limits=httpx.Limits(max_connections=query.concurrency, max_keepalive_connections=query.concurrency),
            follow_redirects=False,
        )
        self.retries = query.retries
        self.backoff = query.backoff
        self.rate = query.rate
        self.sem = asyncio.Semaphore(query.concurrency)
        self.buckets: dict[str, TokenBucket] = {}
        self.requests = 0
        self.retried = 0

    async def close(self) -> None:
        await self.client.aclose()

    async def json(self, method: str, url: str, params: dict | None = None, body: dict | None = None, allow_list: bool = False) -> dict:
        return await self._request(method, url, params, body, "list" if allow_list else "dict")

    async def etag(self, url: str) -> str | None:
        """ETag (or Last-Modified and size) of a remote file, by HEAD, with the same retries."""
        return await self._request("HEAD", url, None, None, "etag")

    async def _request(self, method: str, url: str, params: dict | None, body: dict | None, want: str):
        httpx = self._httpx
        host = urlsplit(url).netloc
        bucket = self.buckets.setdefault(host, TokenBucket(self.rate))
        last = "no attempt"
        for attempt in range(self.retries + 1):
            await bucket.take()
            wait = None
            try:
                async with self.sem:
                    resp, content = await self._send(method, url, params, body)
                if resp.status_code == 200 and want == "etag":
                    h = resp.headers
                    return h.get("ETag") or (f"{h.get('Last-Modified')}|{h.get('Content-Length')}" if h.get("Last-Modified") else None)
                if resp.status_code == 200:
                    try:
                        data = orjson.loads(content)
                    except orjson.JSONDecodeError as exc:
                        last = f"invalid or truncated JSON ({exc.msg})"
                    else:
                        if isinstance(data, dict) or (want == "list" and isinstance(data, list)):
                            return data
                        last = "the response is not a JSON object"
                elif resp.status_code in RETRY_STATUS:
                    last = f"HTTP {resp.status_code}"
                    wait = retry_after(resp.headers.get("Retry-After"))
                else:
                    snippet = self.scrub(content[:200].decode("utf-8", "replace").replace("\n", " "))
                    raise FetchError(f"{method} {show(url, params)}: HTTP {resp.status_code}: {snippet}", status=resp.status_code)
            except httpx.TimeoutException:
                last = "timed out"
            except httpx.TransportError as exc:
                last = f"connection error ({type(exc).__name__})"
            if attempt < self.retries:
                self.retried += 1
                delay = wait if wait is not None else self.backoff * (2**attempt) * random.uniform(0.5, 1.5)
                await asyncio.sleep(delay)
        raise FetchError(f"{method} {show(url, params)}: {last} after {self.retries + 1} attempts")


    async def _send(self, method: str, url: str, params: dict | None, body: dict | None):
        """One request and the redirects it leads to, each sent with the secret headers only
        when it goes to the source's origin."""
        for _ in range(MAX_REDIRECTS + 1):
            headers = self.secrets if origin(url) == self.origin else {}
            self.requests += 1
            resp = await self.client.request(method, url, params=params, json=body, headers=headers)
            content = await resp.aread()
            location = resp.headers.get("Location")
            if resp.status_code not in (301, 302, 303, 307, 308) or not location:
                return resp, content
            url, params = urljoin(str(resp.url), location), None
            if resp.status_code == 303 or (resp.status_code in (301, 302) and method == "POST"):
                method, body = "GET", None
        raise FetchError(f"{method} {url}: more than {MAX_REDIRECTS} redirects")

    def scrub(self, text: str) -> str:
        """``text`` with every secret header value replaced (a server may echo one back)."""
        for value in self.secrets.values():
            if value:
                text = text.replace(value, "***")
        return text


def show(url: str, params: dict | None) -> str:
    if not params:
        return url
    return url + "?" + "&".join(f"{k}={v}" for k, v in params.items())
