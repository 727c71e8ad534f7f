"""The chapter 07 crawler against a local web site: robots.txt, same-site links only, depth and page limits,
skip counts, a manifest that matches the files, and not one request to any other host."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from slmlab.tinylm.corpus import load_documents
from slmlab.tinylm.crawl import CrawlConfig, crawl, page_links
from slmlab.tinylm.spec import MANIFEST_FILE

WORDS = [
    "the",
    "crawler",
    "reads",
    "each",
    "page",
    "of",
    "the",
    "small",
    "local",
    "site",
    "and",
    "keeps",
    "only",
    "its",
    "readable",
    "text",
    "while",
    "it",
    "skips",
    "pictures",
    "broken",
    "links",
    "and",
    "pages",
    "that",
    "robots",
    "forbid",
    "so",
    "the",
    "corpus",
    "stays",
    "clean",
    "and",
    "polite",
]
REDIRECTS = {"/moved.html": "/target.html", "/away.html": "http://example.invalid/elsewhere"}
FAST = {"delay": 0.001, "timeout": 5.0, "progress": False}


def _paragraph(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(80)).capitalize() + "."


def _page(name: str, links: list[str], seed: int) -> str:
    anchors = "".join(f'<li><a href="{link}">{link}</a></li>' for link in links)
    return (
        f"<!doctype html><html><head><title>{name}</title></head><body><nav><ul>{anchors}</ul></nav>"
        f"<article><h1>Page {name}</h1><p>{_paragraph(seed)}</p><p>{_paragraph(seed + 100)}</p></article>"
        f"</body></html>"
    )


# name -> links; index -> a, b -> a1, b1 -> a2 (depth 3); plus every kind of link the crawler must skip
SITE = {
    "index.html": [
        "a.html",
        "b.html#section",
        "private/secret.html",
        "image.png",
        "data.bin",
        "missing.html",
        "http://example.invalid/page",
        "empty.html",
        "drop.html",
        "moved.html",
        "away.html",
        "mailto:someone@example.invalid",
        "a.html",
    ],
    "a.html": ["a1.html", "index.html", "a.html#top"],
    "b.html": ["b1.html"],
    "a1.html": ["a2.html"],
    "b1.html": ["/index.html"],
    "a2.html": ["index.html"],
    "target.html": ["a.html"],
    "private/secret.html": ["index.html"],
}
PAGES_IN_ORDER = ["index.html", "a.html", "b.html", "a1.html", "b1.html", "target.html"]  # breadth-first, depth 2


@dataclass
class Site:
    """A local web site: its base URL and the requests it saw (path, client address, time)."""

    url: str
    requests: list[tuple[str, str, float]] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]


def _write_site(root: Path, robots: str) -> None:
    for index, (name, links) in enumerate(SITE.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(_page(name, links, index), encoding="utf-8")
    (root / "empty.html").write_text("<html><head><title>empty</title></head><body><p> </p></body></html>")
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (root / "data.bin").write_bytes(bytes(range(256)))
    (root / "robots.txt").write_text(robots)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the site folder, records every request, answers redirects and drops one connection unanswered."""

    site: Site

    def do_GET(self) -> None:
        self.site.requests.append((self.path, self.client_address[0], time.monotonic()))
        if self.path in REDIRECTS:
            self.send_response(301)
            self.send_header("Location", REDIRECTS[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/drop.html":
            self.close_connection = True  # no status line at all: the client sees the connection closed
        else:
            super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _serve(root: Path, robots: str) -> Iterator[Site]:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) serving the site written to ``root``, in a thread."""
    _write_site(root, robots)
    site = Site(url="")
    handler = type("RecordingHandler", (_Handler,), {"site": site})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    with _serve(tmp_path / "site", "User-agent: *\nDisallow: /private/\n") as served:
        yield served


@pytest.fixture
def hosts(monkeypatch) -> list[str]:
    """Every host the process connects to and every host a URL is opened for."""
    seen: list[str] = []
    connect, open_url = socket.create_connection, urllib.request.OpenerDirector.open

    def recording_connect(address, *args, **kwargs):
        seen.append(address[0])
        return connect(address, *args, **kwargs)

    def recording_open(self, request, *args, **kwargs):
        seen.append(urlsplit(request if isinstance(request, str) else request.full_url).hostname)
        return open_url(self, request, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", recording_connect)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", recording_open)
    return seen


def test_crawl_follows_the_rules(site, hosts, tmp_path):
    result = crawl(f"{site.url}/index.html", tmp_path / "corpus", CrawlConfig(depth=2, max_pages=50, **FAST))
    assert [page.url for page in result.pages] == [f"{site.url}/{name}" for name in PAGES_IN_ORDER]
    assert [page.depth for page in result.pages] == [0, 1, 1, 2, 2, 1]
    assert result.skipped == {
        "robots": 1,
        "non-html": 2,
        "http-error": 1,
        "no-text": 1,
        "unreachable": 1,
        "redirect": 2,
        "off-site": 3,
        "beyond-depth": 1,
    }
    assert "/private/secret.html" not in site.paths and "/a2.html" not in site.paths  # robots.txt and depth
    assert site.paths[0] == "/robots.txt" and len(site.paths) == result.requests == 14
    assert len(site.paths) == len(set(site.paths))  # each URL once, fragments dropped
    assert {client for _, client, _ in site.requests} == {"127.0.0.1"}
    assert hosts and set(hosts) == {"127.0.0.1"}  # example.invalid was never looked up nor opened


def test_manifest_matches_the_files(site, hosts, tmp_path):
    out = tmp_path / "corpus"
    result = crawl(f"{site.url}/index.html", out, depth=1, max_pages=50, **FAST)
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert manifest["url"] == f"{site.url}/index.html" and manifest["skipped"] == result.skipped
    assert manifest["settings"]["depth"] == 1 and manifest["settings"]["delay_used"] == FAST["delay"]
    assert [entry["url"] for entry in manifest["pages"]] == [page.url for page in result.pages]
    for entry in manifest["pages"]:
        data = (out / entry["file"]).read_bytes()
        assert entry["bytes"] == len(data) and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert sorted(path.name for path in out.iterdir()) == sorted([MANIFEST_FILE] + [e["file"] for e in manifest["pages"]])
    documents = load_documents(out)
    assert [d.source for d in documents] == [page.url for page in result.pages]
    assert "Page a" in documents[1].text and "<" not in documents[1].text
    again = crawl(f"{site.url}/index.html", tmp_path / "again", depth=1, max_pages=50, **FAST)
    assert again.pages == result.pages  # deterministic file names and contents


def test_depth_and_page_limits_are_exact(site, hosts, tmp_path):
    only_start = crawl(f"{site.url}/index.html", tmp_path / "d0", depth=0, **FAST)
    assert [page.url for page in only_start.pages] == [f"{site.url}/index.html"]
    assert site.paths == ["/robots.txt", "/index.html"]
    assert only_start.skipped == {"beyond-depth": 10, "off-site": 2}
    site.requests.clear()
    two = crawl(f"{site.url}/index.html", tmp_path / "p2", depth=5, max_pages=2, **FAST)
    assert [page.url for page in two.pages] == [f"{site.url}/index.html", f"{site.url}/a.html"]
    assert site.paths == ["/robots.txt", "/index.html", "/a.html"]
    assert two.skipped["not-visited"] == 10


def test_unreachable_start_is_counted(hosts, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    result = crawl(f"http://127.0.0.1:{port}/", tmp_path / "none", **FAST)
    assert result.pages == [] and result.skipped == {"unreachable": 1} and result.requests == 2
    assert json.loads((tmp_path / "none" / MANIFEST_FILE).read_text())["pages"] == []


def test_crawl_delay_from_robots_is_honoured(tmp_path, hosts):
    with _serve(tmp_path / "slow", "User-agent: *\nCrawl-delay: 1\n") as site:
        result = crawl(f"{site.url}/index.html", tmp_path / "corpus", depth=0, **FAST)
        assert result.delay == 1.0 and len(result.pages) == 1
        (_, _, robots_time), (_, _, page_time) = site.requests
        assert page_time - robots_time >= 0.9


def test_only_http_urls():
    with pytest.raises(ValueError, match="Only http and https"):
        crawl("ftp://127.0.0.1/", "unused")
    with pytest.raises(ValueError, match="max_pages"):
        crawl("http://127.0.0.1/", "unused", max_pages=0)


def test_page_links_resolve_and_drop_fragments():
    html = (
        '<html><head><base href="http://h/dir/"></head><body><a href="x.html#f">x</a><a href="/y">y</a>'
        '<a href="x.html">again</a><a>none</a><img src="z.png"></body></html>'
    )
    assert page_links(html, "http://h/page.html") == ["http://h/dir/x.html", "http://h/y"]


def test_large_pages_are_skipped_and_the_progress_bar_runs(site, hosts, tmp_path):
    result = crawl(f"{site.url}/index.html", tmp_path / "big", depth=0, max_page_bytes=100, **{**FAST, "progress": True})
    assert result.pages == [] and result.skipped == {"too-large": 1}
