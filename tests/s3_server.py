"""A real S3 API for tests: moto in server mode on 127.0.0.1, optionally behind a proxy that
throttles (503 SlowDown, as S3 does under load) a chosen share of the PUT requests."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx

from stac_server import QuietHandler, free_port, serve_in_thread

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIASTACGITTESTKEY01",
    "AWS_SECRET_ACCESS_KEY": "stacgit-test-secret-do-not-print-4f9c2e",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Fake but distinctive credentials: tests look for them in every output and file."""

_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}


class MotoServer:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **CREDENTIALS}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/moto-api/", timeout=1).status_code < 500:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.close()
        raise RuntimeError("moto server did not start")

    def client(self):
        import boto3

        return boto3.session.Session(
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1"
        ).client("s3", endpoint_url=self.url)

    def reset(self) -> None:
        httpx.post(self.url + "/moto-api/reset", timeout=10)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, dict]:
        """key -> {size, etag}: everything under ``prefix``."""
        out = {}
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for o in page.get("Contents", ()):
                out[o["Key"]] = {"size": o["Size"], "etag": o["ETag"]}
        return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class ThrottlingProxy:
    """Forwards everything to ``upstream``; answers every ``every``-th PUT with 503 SlowDown
    instead (0: never) and holds each PUT for ``delay`` seconds. ``log`` keeps (method, path,
    status) of each request, in the order they arrived."""

    def __init__(self, upstream: str, every: int = 0, delay: float = 0.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.every = every
        self.delay = delay
        self.puts = 0
        self.log: list[tuple[str, str, int]] = []
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=60)
        proxy = self

        class Handler(QuietHandler):
            def _handle(self):
                body = self.read_body()
                with proxy.lock:
                    if self.command == "PUT":
                        proxy.puts += 1
                        throttle = bool(proxy.every) and proxy.puts % proxy.every == 0
                    else:
                        throttle = False
                if self.command == "PUT" and proxy.delay:
                    time.sleep(proxy.delay)
                if throttle:
                    data = b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                    proxy.log.append((self.command, self.path, 503))
                    return self._send(503, data, {"Content-Type": "application/xml"})
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                headers["Host"] = upstream.split("://", 1)[1]
                try:
                    resp = proxy.client.request(self.command, upstream + self.path, content=body or None, headers=headers)
                except (httpx.HTTPError, RuntimeError):  # upstream gone, or the proxy is closing
                    return self._send(502, b"", {})
                proxy.log.append((self.command, self.path, resp.status_code))
                out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP and k.lower() != "content-encoding"}
                return self._send(resp.status_code, resp.content, out)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = serve_in_thread(self.port, Handler)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()
