"""Secrets stay with their host: two real HTTP servers on 127.0.0.1 (two ports, two origins).
The STAC API's ``next`` link and redirect lead to the other one, which must receive no secret
header; a secret a server echoes reaches no terminal line and no file."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import stacgit

TOKEN = "s3cr3t-token-value"
KEY = "api-key-value-42"


def feature(i: str) -> dict:
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": i, "bbox": [0, 0, 1, 1],
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
        "properties": {"datetime": "2020-01-01T00:00:00Z"}, "assets": {}, "links": [],
    }


class Server:
    """A tiny JSON server: ``routes`` maps (method, path) to a function of the request giving
    (status, headers, body); every request's headers are recorded."""

    def __init__(self, routes: dict):
        self.routes, self.seen = routes, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outer.seen.append((self.command, self.path, dict(self.headers)))
                status, headers, data = outer.routes.get((self.command, self.path.split("?")[0]), lambda h, b: (404, {}, {}))(dict(self.headers), body)
                raw = json.dumps(data).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made = []

    def make(routes):
        s = Server(routes)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _catalog(repo: Path, url: str) -> None:
    (repo / "catalogs/remote").mkdir(parents=True)
    (repo / "catalogs/remote/catalog.yaml").write_text(
        "id: remote\ndescription: d\nlicense: CC0-1.0\ncollections:\n"
        f"  - id: c\n    description: d\n    source: {{type: stac-api, url: '{url}', collection: c, method: POST, retries: 0,\n"
        "               headers: {Authorization: {env: STAC_TOKEN}, X-Api-Key: {env: STAC_KEY}}}\n"
    )


def _secret_headers(seen) -> list[tuple[str, str]]:
    return [(m, p) for m, p, h in seen if any(k.lower() in ("authorization", "x-api-key") for k in h)]


@pytest.mark.parametrize("how", ["next link", "redirect"])
def test_no_secret_crosses_to_another_host(tmp_path, servers, monkeypatch, how):
    other = servers({("POST", "/page2"): lambda h, b: (200, {}, {"features": [feature("b")], "links": []})})
    if how == "next link":
        first = {"features": [feature("a")], "links": [{"rel": "next", "href": f"{other.url}/page2", "method": "POST", "body": {"token": 2}}]}
        api = servers({("POST", "/search"): lambda h, b: (200, {}, first)})
    else:
        api = servers({("POST", "/search"): lambda h, b: (307, {"Location": f"{other.url}/page2"}, {})})
    monkeypatch.setenv("STAC_TOKEN", TOKEN)
    monkeypatch.setenv("STAC_KEY", KEY)
    repo = tmp_path / "repo"
    _catalog(repo, api.url)
    res = stacgit(repo, "snapshot", "--json")
    assert res.exit_code == 0, res.stdout + res.stderr
    assert [h.get("Authorization") for _, _, h in api.seen] == [TOKEN]  # the configured origin gets them
    assert other.seen and _secret_headers(other.seen) == []


def test_an_echoed_secret_is_scrubbed_and_relative_next_links_resolve(tmp_path, servers, monkeypatch):
    def search(headers, body):
        if json.loads(body or b"{}").get("token") == 2:  # the second page: the server echoes the request back
            return 400, {}, {"error": f"bad token {headers.get('Authorization')} / {headers.get('X-Api-Key')}"}
        return 200, {}, {"features": [feature("a")], "links": [{"rel": "next", "href": "search", "method": "POST", "body": {"token": 2}}]}

    api = servers({("POST", "/search"): search})
    monkeypatch.setenv("STAC_TOKEN", TOKEN)
    monkeypatch.setenv("STAC_KEY", KEY)
    repo = tmp_path / "repo"
    _catalog(repo, api.url + "/")
    res = stacgit(repo, "snapshot", "--json")
    assert res.exit_code == 1
    assert [p for _, p, _ in api.seen] == ["/search", "/search"]  # "search" relative to the page URL
    assert "HTTP 400" in res.stdout + res.stderr and "bad token ***" in res.stdout + res.stderr
    everything = res.stdout + res.stderr + "".join(p.read_text(errors="replace") for p in repo.rglob("*") if p.is_file())
    assert TOKEN not in everything and KEY not in everything


def test_a_post_next_link_to_the_api_root_is_sent_to_search(tmp_path, servers, monkeypatch):
    """Planetary Computer's broken next link: POST to the API root, answered 405."""
    def search(headers, body):
        page = json.loads(body or b"{}").get("token", 1)
        links = [{"rel": "next", "href": api.url + "/", "method": "POST", "merge": True, "body": {"token": page + 1}}] if page < 3 else []
        return 200, {}, {"features": [feature(f"i{page}")], "links": links}

    api = servers({("POST", "/search"): search, ("POST", "/"): lambda h, b: (405, {}, {"detail": "Method Not Allowed"})})
    monkeypatch.setenv("STAC_TOKEN", TOKEN)
    monkeypatch.setenv("STAC_KEY", KEY)
    repo = tmp_path / "repo"
    _catalog(repo, api.url)
    res = stacgit(repo, "snapshot", "--json")
    assert res.exit_code == 0, res.stdout
    report = res.json["collections"]["remote/c"]
    assert report["records"] == 3 and report["complete"]
    assert report["notes"] == [f"next link POST {api.url}/ answered 405: sent to {api.url}/search instead"]
