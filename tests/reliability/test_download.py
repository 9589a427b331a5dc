"""The UCI download against a real HTTP server on 127.0.0.1 (stdlib ``http.server`` in a thread).

``data.url`` and ``data.mirror_url`` point at the server, which serves what goes wrong in practice: a truncated
archive, an HTML error page, a wrong checksum, a dropped connection, a 503. Nothing unverified is ever cached,
passing failures are retried with backoff, and the final error names both URLs and the manual fix.
"""

from __future__ import annotations

import hashlib
import io
import threading
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.config import DataConfig
from pipeline.data.download import UCI_MEMBER, fetch_uci
from pipeline.errors import DataError

CONTENT = b"ham\thello there\nspam\tWIN a prize now, call 0800\nham\tsee you at 6\n"
ZIP_BYTES = io.BytesIO()
with zipfile.ZipFile(ZIP_BYTES, "w", zipfile.ZIP_DEFLATED) as _archive:
    _archive.writestr(UCI_MEMBER, CONTENT * 200)
    _archive.writestr("readme", "SMS Spam Collection")
GOOD_ZIP = ZIP_BYTES.getvalue()
SHA256 = hashlib.sha256(CONTENT * 200).hexdigest()
HTML = b"<!DOCTYPE html><html><body><h1>503 Service Unavailable</h1></body></html>"

# Direct connections only: a proxy from the environment must never see (or answer for) 127.0.0.1.
OPEN = urllib.request.build_opener(urllib.request.ProxyHandler({})).open


@dataclass
class Route:
    """What the server answers on a path, one entry per request (the last one repeats)."""

    answers: list[str]
    served: int = 0

    def next(self) -> str:
        answer = self.answers[min(self.served, len(self.answers) - 1)]
        self.served += 1
        return answer


@dataclass
class Server:
    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter = field(default_factory=Counter)
    base: str = ""

    def url(self, path: str, *answers: str) -> str:
        self.routes[path] = Route(list(answers))
        return f"{self.base}{path}"


def handler_for(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.hits[self.path] += 1
            route = server.routes.get(self.path)
            answer = route.next() if route else "404"
            if answer == "zip":
                self._send(200, "application/zip", GOOD_ZIP)
            elif answer == "truncated":  # a file cut off at the source: honest length, broken archive
                self._send(200, "application/zip", GOOD_ZIP[: len(GOOD_ZIP) // 2])
            elif answer == "dropped":  # the connection breaks mid-body: fewer bytes than Content-Length
                self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(GOOD_ZIP)))
                self.end_headers()
                self.wfile.write(GOOD_ZIP[: len(GOOD_ZIP) // 2])
                self.close_connection = True
            elif answer == "html":  # a captive portal or CDN error page, served with 200
                self._send(200, "text/html; charset=utf-8", HTML)
            elif answer == "503":
                self._send(503, "text/html", HTML)
            else:
                self._send(404, "text/plain", b"not found")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def config(tmp_path: Path, url: str, mirror: str, sha256: str = SHA256) -> DataConfig:
    return DataConfig(cache_dir=str(tmp_path / "cache"), url=url, mirror_url=mirror, sha256=sha256, download_timeout=10)


def fetch(cfg: DataConfig, pauses: list[float] | None = None) -> Path:
    sleep = pauses.append if pauses is not None else (lambda seconds: None)
    return fetch_uci(cfg, progress=False, urlopen=OPEN, attempts=3, backoff=0.5, sleep=sleep)


def assert_nothing_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert not cache.exists() or list(cache.iterdir()) == [], list(cache.iterdir())


def test_truncated_archive_and_html_page_leave_nothing_and_name_both_urls(server: Server, tmp_path: Path):
    cfg = config(tmp_path, server.url("/uci.zip", "truncated"), server.url("/mirror.zip", "html"))
    with pytest.raises(DataError) as caught:
        fetch(cfg)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{cfg.url} (not a valid zip archive" in message
    assert f"nor from {cfg.mirror_url} (got an HTML page instead of the zip" in message
    assert f"download {cfg.url} yourself, unzip it and pass data.source=file data.path=FILE" in message
    # A wrong payload is not asked for again: the same bytes would come back.
    assert server.hits == Counter({"/uci.zip": 1, "/mirror.zip": 1})
    assert_nothing_cached(tmp_path)


def test_wrong_checksum_is_never_cached_and_says_which_setting(server: Server, tmp_path: Path):
    cfg = config(tmp_path, server.url("/uci.zip", "zip"), server.url("/mirror.zip", "zip"), sha256="0" * 64)
    with pytest.raises(DataError, match=r"data\.sha256") as caught:
        fetch(cfg)
    assert f"{cfg.mirror_url} (sha256 {SHA256} != data.sha256" in str(caught.value)
    assert "set data.sha256 to its new checksum" in str(caught.value)
    assert_nothing_cached(tmp_path)


def test_passing_failures_are_retried_with_backoff_then_the_mirror_is_used(server: Server, tmp_path: Path):
    # The main URL answers 503 three times; the mirror drops the connection once, then serves the file.
    cfg = config(tmp_path, server.url("/uci.zip", "503"), server.url("/mirror.zip", "dropped", "zip"))
    pauses: list[float] = []
    path = fetch(cfg, pauses)
    assert path.read_bytes() == CONTENT * 200
    assert server.hits == Counter({"/uci.zip": 3, "/mirror.zip": 2})
    assert pauses == [0.5, 1.0, 0.5]  # per URL: backoff, 2 x backoff, ...
    assert sorted(p.name for p in path.parent.iterdir()) == [UCI_MEMBER]  # no temp file left beside it
    # Cached and verified: a second call asks nobody.
    assert fetch(cfg) == path and sum(server.hits.values()) == 5


def test_a_404_is_not_retried(server: Server, tmp_path: Path):
    cfg = config(tmp_path, server.url("/gone.zip", "404"), server.url("/mirror.zip", "zip"))
    assert fetch(cfg).read_bytes() == CONTENT * 200
    assert server.hits == Counter({"/gone.zip": 1, "/mirror.zip": 1})
