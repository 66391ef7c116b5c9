"""A real STAC API for tests: ``rustac serve`` on 127.0.0.1, behind a fault-injecting proxy.

``rustac serve --addr <proxy> --bind <own port>`` makes every link it writes point at the
proxy, so paging goes through the proxy too. The proxy forwards requests with httpx and can,
per request, answer 429 (with Retry-After), 503, answer slowly, drop the connection, truncate
the JSON, or rewrite ``next`` links into a loop. It logs every request (method, path, query,
body, headers) for assertions.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_items(n: int, collection: str = "c1", year: int = 2020) -> list[dict]:
    items = []
    for k in range(n):
        month = k % 12 + 1
        items.append(
            {
                "type": "Feature",
                "stac_version": "1.0.0",
                "id": f"item-{k:04d}",
                "collection": collection,
                "geometry": {"type": "Point", "coordinates": [k % 180 - 90.0, (k % 90) - 45.0]},
                "bbox": [k % 180 - 90.0, (k % 90) - 45.0, k % 180 - 90.0, (k % 90) - 45.0],
                "properties": {"datetime": f"{year}-{month:02d}-{k % 27 + 1:02d}T{k % 24:02d}:00:00Z", "eo:cloud_cover": k % 100},
                "links": [{"rel": "self", "href": f"http://upstream/{k}"}, {"rel": "license", "href": "https://example.com/license"}],
                "assets": {"data": {"href": f"https://example.com/{k}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]}},
            }
        )
    return items


class QuietHandler(BaseHTTPRequestHandler):
    """A keep-alive handler that logs nothing, with body reading and replies."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, code: int, data: bytes, headers: dict | None = None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def serve_in_thread(port: int, handler: type) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class FaultProxy:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.upstream = ""
        self.plan: list[str] = []  # faults for the next requests, in order ("ok" = none)
        self.rules: list[tuple] = []  # (predicate(path_and_query, body) -> bool, fault) applied to every match
        self.latency = 0.0
        self.log: list[dict] = []
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=30)
        proxy = self

        class Handler(QuietHandler):
            def _handle(self):
                body = self.read_body()
                with proxy.lock:
                    fault = proxy.plan.pop(0) if proxy.plan else "ok"
                    for pred, f in proxy.rules:
                        if pred(self.path, body):
                            fault = f
                    proxy.log.append({"method": self.command, "path": self.path, "body": body.decode() if body else "", "headers": dict(self.headers), "fault": fault})
                if proxy.latency:
                    time.sleep(proxy.latency)
                if fault == "429":
                    return self._send(429, b'{"code":"TooManyRequests"}', {"Retry-After": "1"})
                if fault in ("503", "500", "401"):
                    return self._send(int(fault), b'{"code":"Unavailable"}')
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if fault == "slow":
                    time.sleep(2.5)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                resp = proxy.client.request(self.command, proxy.upstream + self.path, content=body or None, headers=headers)
                data = resp.content
                if fault == "truncate":
                    data = data[: len(data) // 2]
                if fault == "loop" and resp.status_code == 200:
                    doc = json.loads(data)
                    for link in doc.get("links", []):
                        if link.get("rel") == "next":
                            link["href"] = proxy.url + self.path
                            if link.get("body"):
                                link["body"] = json.loads(body)
                    data = json.dumps(doc).encode()
                return self._send(resp.status_code, data, {"Content-Type": resp.headers.get("content-type", "application/json")})

            do_GET = _handle
            do_POST = _handle

        self.server = serve_in_thread(self.port, Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()


def wait_until_served(url: str, seconds: float = 30) -> None:
    """Return once ``url`` answers 200 (a server just started); RuntimeError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer: the server did not start")


class StacServer:
    """rustac serve with a given item set; ``serve(items)`` restarts it with new items."""

    def __init__(self, workdir: Path, proxy: FaultProxy):
        self.workdir = workdir
        self.proxy = proxy
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        exe = shutil.which("rustac") or str(Path(sys.executable).with_name("rustac"))
        self.exe = exe

    def serve(self, items: list[dict], collection: str = "c1") -> None:
        self.stop()
        self.workdir.mkdir(parents=True, exist_ok=True)
        coll = {
            "type": "Collection", "stac_version": "1.1.0", "id": collection, "description": "test collection", "license": "CC0-1.0",
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]}}, "links": [],
        }
        (self.workdir / "collection.json").write_text(json.dumps(coll))
        (self.workdir / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
        self.proc = subprocess.Popen(
            [self.exe, "serve", "--addr", f"127.0.0.1:{self.proxy.port}", "--bind", f"127.0.0.1:{self.port}", "collection.json", "items.json"],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.proxy.upstream = f"http://127.0.0.1:{self.port}"
        wait_until_served(f"{self.proxy.upstream}/collections/{collection}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None
