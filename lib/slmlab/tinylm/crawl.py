"""A polite breadth-first crawler of one web site that turns its HTML pages into a text corpus folder.

Same site only, robots.txt honoured, one request per delay, readable text by trafilatura, a manifest.json.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import urllib.robotparser
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import trafilatura
from lxml import etree
from lxml import html as lxml_html
from tqdm.auto import tqdm

from slmlab.io import atomic_write_folder
from slmlab.tinylm.corpus import document_file_name, file_digest
from slmlab.tinylm.spec import MANIFEST_FILE
from slmlab.tinylm.spec import CrawlConfig as CrawlConfig

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
DEFAULT_PORTS = {"http": 80, "https": 443}
# Why a URL was not turned into a page, as counted in CrawlResult.skipped and the manifest:
SKIP_REASONS = {
    "robots": "disallowed by robots.txt (never requested)",
    "off-site": "a link to another scheme, host or port (never requested)",
    "beyond-depth": "a same-site link deeper than the depth limit (never requested)",
    "not-visited": "still queued when max_pages pages were written (never requested)",
    "unreachable": "no answer: connection refused, DNS failure, timeout",
    "http-error": "an HTTP error status (404, 500, ...)",
    "redirect": "a redirect (a same-site target is queued as a link of the same page)",
    "non-html": "a Content-Type other than HTML",
    "too-large": "a body larger than max_page_bytes",
    "no-text": "trafilatura found no readable text",
}


@dataclass(frozen=True)
class CrawledPage:
    """One page written to the corpus folder."""

    url: str
    file: str
    bytes: int
    sha256: str
    depth: int


@dataclass
class CrawlResult:
    """What a crawl wrote (``out_dir`` with one ``.txt`` per page and ``manifest.json``) and what it skipped."""

    url: str
    out_dir: Path
    pages: list[CrawledPage]
    skipped: dict[str, int]  # reason (see SKIP_REASONS) → number of URLs
    requests: int  # HTTP requests made, robots.txt included
    delay: float  # the delay used between requests: the configured one or robots.txt's larger Crawl-delay
    config: CrawlConfig = field(default_factory=CrawlConfig)

    @property
    def manifest(self) -> Path:
        return self.out_dir / MANIFEST_FILE


def crawl(url: str, out_dir: str | Path, config: CrawlConfig | None = None, **overrides: object) -> CrawlResult:
    """Crawl the site of ``url`` breadth-first and write its pages' readable text as a corpus folder, atomically.

    ``overrides`` replace fields of ``config`` (``crawl(url, out, max_pages=5, depth=1)``). Only links to the same
    scheme, host and port are followed, robots.txt is honoured, unreachable pages and non-HTML responses are
    skipped and counted. ``load_documents(out_dir)`` reads the result (the manifest gives each page its URL).
    """
    config = replace(config or CrawlConfig(), **overrides)
    start = _validated(url, config)
    crawler = _Crawler(start, config)
    pages = crawler.run()
    out_dir = Path(out_dir)
    manifest = {
        "url": start,
        "settings": {**asdict(config), "delay_used": crawler.delay},
        "pages": [asdict(page) for page, _ in pages],
        "skipped": dict(sorted(crawler.skipped.items())),
        "skip_reasons": SKIP_REASONS,
        "requests": crawler.requests,
    }

    def write(tmp: Path) -> None:
        for page, data in pages:
            (tmp / page.file).write_bytes(data)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    atomic_write_folder(out_dir, write)
    return CrawlResult(
        url=start,
        out_dir=out_dir,
        pages=[page for page, _ in pages],
        skipped=dict(crawler.skipped),
        requests=crawler.requests,
        delay=crawler.delay,
        config=config,
    )


def site_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the port filled in for http and https: two URLs are on one site when equal."""
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(parts.scheme.lower())


def page_links(html: bytes | str, base_url: str) -> list[str]:
    """Absolute URLs (without fragments) of the ``<a href>`` links of a page, in document order, each once."""
    try:
        tree = lxml_html.fromstring(html, base_url=base_url)
    except (ValueError, etree.ParserError):
        return []
    tree.make_links_absolute(base_url, resolve_base_href=True, handle_failures="discard")
    links = (urldefrag(anchor.get("href", "").strip())[0] for anchor in tree.iter("a"))
    return list(dict.fromkeys(link for link in links if link))


def _validated(url: str, config: CrawlConfig) -> str:
    if site_of(url)[0] not in DEFAULT_PORTS or not urlsplit(url).hostname:
        raise ValueError(f"Only http and https URLs can be crawled, got {url!r}.")
    if config.max_pages < 1 or config.depth < 0 or config.delay < 0 or config.timeout <= 0:
        raise ValueError(
            f"max_pages must be >= 1, depth and delay >= 0 and timeout > 0; got max_pages={config.max_pages}, "
            f"depth={config.depth}, delay={config.delay}, timeout={config.timeout}"
        )
    return urldefrag(url)[0]


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hand redirects back to the crawler, which checks the target's site and robots.txt before following it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Response:
    """The part of an HTTP answer the crawler needs."""

    def __init__(self, status: int, content_type: str, body: bytes | None, location: str | None = None) -> None:
        self.status, self.content_type, self.body, self.location = status, content_type, body, location


class _Crawler:
    """One crawl's state: the breadth-first frontier, the URLs seen, the skip counts and the request clock."""

    def __init__(self, start: str, config: CrawlConfig) -> None:
        self.start, self.config, self.site = start, config, site_of(start)
        self.opener = urllib.request.build_opener(_NoRedirects)
        self.skipped: Counter[str] = Counter()
        self.requests = 0
        self.delay = config.delay
        self._last_request: float | None = None
        self.seen = {start}
        self.frontier: deque[tuple[str, int]] = deque([(start, 0)])

    def run(self) -> list[tuple[CrawledPage, bytes]]:
        robots = self._robots()
        pages: list[tuple[CrawledPage, bytes]] = []
        with tqdm(total=self.config.max_pages, unit="page", desc="crawl", disable=not self.config.progress) as bar:
            while self.frontier and len(pages) < self.config.max_pages:
                url, depth = self.frontier.popleft()
                if not robots.can_fetch(self.config.user_agent, url):
                    self.skipped["robots"] += 1
                    continue
                text = self._visit(url, depth)
                if text is not None:
                    data = text.encode("utf-8")
                    pages.append((CrawledPage(url, document_file_name(len(pages), url), depth=depth, **file_digest(data)), data))
                    bar.update(1)
                bar.set_postfix(queued=len(self.frontier), skipped=sum(self.skipped.values()), refresh=False)
        if self.frontier:
            self.skipped["not-visited"] += len(self.frontier)
        return pages

    def _robots(self) -> urllib.robotparser.RobotFileParser:
        """The site's robots.txt, fetched like any page (same agent, timeout and delay).

        As in RFC 9309: a robots.txt that is forbidden (401, 403) or failing (5xx) disallows everything; one that is
        unavailable (another 4xx, a redirect, no answer) allows everything.
        """
        parts = urlsplit(self.start)
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        parser = urllib.robotparser.RobotFileParser(robots_url)
        response = self._fetch(robots_url)
        if response is not None and (response.status in (401, 403) or response.status >= 500):
            parser.disallow_all = True
        elif response is None or response.status >= 300 or response.body is None:
            parser.allow_all = True
        else:
            parser.parse(response.body.decode("utf-8", errors="replace").splitlines())
        crawl_delay = parser.crawl_delay(self.config.user_agent)
        if crawl_delay is not None and float(crawl_delay) > self.delay:
            self.delay = float(crawl_delay)
        return parser

    def _visit(self, url: str, depth: int) -> str | None:
        """The readable text of a page (None when skipped, counted), queueing its same-site links."""
        response = self._fetch(url, read_types=HTML_TYPES)
        if response is None:
            self.skipped["unreachable"] += 1
        elif 300 <= response.status < 400:
            self.skipped["redirect"] += 1
            if response.location:
                self._queue([urldefrag(urljoin(url, response.location))[0]], depth)
        elif response.status >= 400:
            self.skipped["http-error"] += 1
        elif response.content_type not in HTML_TYPES:
            self.skipped["non-html"] += 1
        elif response.body is None:
            self.skipped["too-large"] += 1
        else:
            if depth < self.config.depth:
                self._queue(page_links(response.body, url), depth + 1)
            else:
                self._count_beyond_depth(page_links(response.body, url))
            text = trafilatura.extract(response.body, url=url)
            if text and text.strip():
                return text.strip() + "\n"
            self.skipped["no-text"] += 1
        return None

    def _queue(self, links: list[str], depth: int) -> None:
        for link in links:
            if link in self.seen:
                continue
            self.seen.add(link)
            if site_of(link) != self.site:
                self.skipped["off-site"] += 1
            else:
                self.frontier.append((link, depth))

    def _count_beyond_depth(self, links: list[str]) -> None:
        for link in links:
            if link not in self.seen:
                self.seen.add(link)
                self.skipped["off-site" if site_of(link) != self.site else "beyond-depth"] += 1

    def _fetch(self, url: str, read_types: frozenset[str] | None = None) -> _Response | None:
        """One GET after the rate limit's wait; the body is read only for ``read_types`` (all when None)."""
        self._wait()
        request = urllib.request.Request(url, headers={"User-Agent": self.config.user_agent})
        self.requests += 1
        try:
            with self.opener.open(request, timeout=self.config.timeout) as answer:
                content_type = answer.headers.get_content_type()
                body = None
                if read_types is None or content_type in read_types:
                    body = answer.read(self.config.max_page_bytes + 1)
                    body = body if len(body) <= self.config.max_page_bytes else None
                return _Response(answer.status, content_type, body)
        except urllib.error.HTTPError as error:
            error.close()
            return _Response(
                error.code,
                error.headers.get_content_type() if error.headers else "",
                None,
                error.headers.get("Location") if error.headers else None,
            )
        except (urllib.error.URLError, OSError, ValueError):
            return None  # refused, unresolvable, timed out, or a URL urllib cannot request
        finally:
            self._last_request = time.monotonic()

    def _wait(self) -> None:
        if self._last_request is not None:
            remaining = self._last_request + self.delay - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
