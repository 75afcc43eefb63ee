"""A polite fetcher for company websites: the home page and the few pages worth reading.

`WebResearcher.fetch_site(url)` fetches the home page, finds on it links to the pages that
matter for outreach (about, blog or changelog, customers, careers, docs; `web_extract.KINDS`)
and fetches up to `max_pages` pages in all. Politely and safely:

- robots.txt is honoured (Protego, a maintained parser), fetched once per origin; RFC 9309's
  rules for a robots.txt that is missing (4xx: everything allowed) or unreachable (5xx, network
  error: nothing allowed). Its `Crawl-delay` widens the gap between requests, up to a cap;
- an identifying user agent naming a contact where site owners reach the operator;
- one request per origin per `min_interval` seconds (`aiolimiter`), however many accounts run
  at once; a page answered from the cache waits for nobody;
- per-phase timeouts and a deadline on reading the body; a size limit, enforced while streaming;
- redirects followed by hand, at most `max_redirects`, each hop checked again (scheme, public
  address, robots.txt of its origin), a hop seen before is a loop;
- only http(s) to public addresses, after DNS and again at the connected socket (`web_guard`);
- an HTTP cache (hishel 2, SQLite under `cache_dir`): a re-run within `cache_ttl` reads the
  stored page, and the page keeps the time it was really fetched.

A bad site never raises: every failure is a `Page` whose `error` says what happened, so research
goes on with its other sources.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urljoin, urlsplit

import httpx
from aiolimiter import AsyncLimiter
from hishel import AsyncSqliteStorage
from hishel.httpx import AsyncCacheTransport
from protego import Protego
from pydantic import BaseModel, ConfigDict, Field

from tools.web_extract import extract, pick_links
from tools.web_guard import Refused, check_address, check_url, origin

__all__ = ["Page", "SiteSnapshot", "WebSettings", "WebResearcher"]

_FETCHED_AT = "x-gtm-fetched-at"
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB


class Page(BaseModel):
    """One fetched page, or why it could not be read."""

    model_config = ConfigDict(frozen=True)

    url: str = Field(description="Where the text came from (after redirects).")
    kind: str = Field(description="home, about, blog, customers, careers or docs.")
    fetched_at: datetime = Field(description="When the page was fetched from the site.")
    status: int | None = Field(default=None, description="HTTP status; None if none came.")
    title: str | None = None
    text: str = Field(default="", description="The visible main text, hidden parts removed.")
    published: date | None = Field(default=None, description="The date the page states.")
    error: str | None = Field(default=None, description="Why there is no text; None if read.")
    from_cache: bool = Field(default=False, description="Read from the HTTP cache.")
    hidden: list[str] = Field(
        default_factory=list, description="What the page hid from its reader and we removed."
    )


class SiteSnapshot(BaseModel):
    """What one website said, page by page."""

    model_config = ConfigDict(frozen=True)

    url: str
    pages: list[Page]

    @property
    def readable(self) -> list[Page]:
        """The pages that have text."""
        return [p for p in self.pages if p.error is None and p.text]


class WebSettings(BaseModel):
    """How politely and how far the fetcher goes. `contact` is required: a URL or address where
    a site's owner can reach whoever runs the research (it goes in the user agent)."""

    model_config = ConfigDict(frozen=True)

    contact: str
    product: str = "gtm-agents"
    max_pages: int = Field(default=5, ge=1, le=10)
    min_interval: float = Field(default=1.0, ge=0, description="Seconds between requests.")
    max_crawl_delay: float = Field(default=10.0, ge=0)
    timeout: float = Field(default=10.0, gt=0)
    max_bytes: int = Field(default=2_000_000, gt=0)
    max_redirects: int = Field(default=5, ge=0)
    cache_ttl: float = Field(default=7 * 86400, gt=0)
    allow_private: bool = Field(default=False, description="Tests only: loopback sites.")

    @property
    def user_agent(self) -> str:
        return f"{self.product}/0.1 (+{self.contact})"


class _Failed(Exception):
    """A page cannot be read; the message is `Page.error`."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Network(httpx.AsyncBaseTransport):
    """Below the cache: waits its origin's turn, checks the connected address, stamps the time."""

    def __init__(self, inner: httpx.AsyncBaseTransport, web: WebResearcher) -> None:
        self._inner = inner
        self._web = web

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async with self._web._limiter(origin(str(request.url))):
            response = await self._inner.handle_async_request(request)
        stream = response.extensions.get("network_stream")
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        if peer:
            try:
                check_address(str(peer[0]), allow_private=self._web.settings.allow_private)
            except Refused:
                await response.aclose()
                raise
        response.headers[_FETCHED_AT] = datetime.now(UTC).isoformat()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class WebResearcher:
    """Fetches websites for research; one instance per run, shared by every account."""

    def __init__(
        self,
        cache_dir: Path,
        settings: WebSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._limiters: dict[str, AsyncLimiter] = {}
        self._robots: dict[str, Protego | str | None] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._links: dict[str, list[tuple[str, str]]] = {}
        cache_dir.mkdir(parents=True, exist_ok=True)
        storage = AsyncSqliteStorage(
            database_path=cache_dir / "web-cache.db", default_ttl=settings.cache_ttl
        )
        network = _Network(transport or httpx.AsyncHTTPTransport(), self)
        self._client = httpx.AsyncClient(
            transport=AsyncCacheTransport(next_transport=network, storage=storage),
            headers={"User-Agent": settings.user_agent, "Accept": "text/html,*/*;q=0.1"},
            timeout=httpx.Timeout(settings.timeout),
            follow_redirects=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _limiter(self, key: str) -> AsyncLimiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = _spacing(self.settings.min_interval)
        return limiter

    async def fetch_site(self, url: str) -> SiteSnapshot:
        """The home page at `url` and up to `max_pages - 1` pages it links to on its site."""
        url = url.strip()
        if "://" not in url:
            url = f"https://{url}"
        home = await self.fetch_page(url, "home")
        pages = [home]
        if home.error is None:
            links = pick_links(home.url, self._links.pop(home.url, []), self.settings.max_pages - 1)
            pages += await asyncio.gather(*(self.fetch_page(u, kind) for kind, u in links))
        return SiteSnapshot(url=url, pages=pages)

    async def fetch_page(self, url: str, kind: str = "page") -> Page:
        """One page, never raising: a failure is a `Page` with `error` set."""
        try:
            final, status, body, fetched_at, cached = await self._get(url)
        except _Failed as exc:
            return _failed(url, kind, str(exc), exc.status)
        except Refused as exc:
            return _failed(url, kind, str(exc))
        except httpx.TimeoutException as exc:
            return _failed(url, kind, f"timeout ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            return _failed(url, kind, f"connection failed ({type(exc).__name__}: {exc})")
        except Exception as exc:  # a bad site must not fail the account
            return _failed(url, kind, f"unexpected error ({type(exc).__name__}: {exc})")
        try:
            found = await asyncio.to_thread(extract, body, final)
        except Exception as exc:
            return _failed(final, kind, f"extraction failed ({type(exc).__name__})", status)
        if kind == "home":
            self._links[final] = found.links
        return Page(
            url=final,
            kind=kind,
            fetched_at=fetched_at,
            status=status,
            title=found.title,
            text=found.text,
            published=found.published,
            from_cache=cached,
            hidden=found.hidden,
        )

    async def _get(self, url: str) -> tuple[str, int, str, datetime, bool]:
        """Follow redirects to an HTML page: (final URL, status, HTML, fetched at, cached)."""
        seen: set[str] = set()
        current = url
        for _hop in range(self.settings.max_redirects + 1):
            if current in seen:
                raise _Failed(f"redirect loop: {current} again")
            seen.add(current)
            await check_url(current, allow_private=self.settings.allow_private)
            if not await self._allowed(current):
                raise _Failed(f"robots.txt disallows {urlsplit(current).path or '/'}")
            request = self._client.build_request("GET", current)
            response = await self._client.send(request, stream=True)
            try:
                if response.is_redirect:
                    current = _next_hop(current, response)
                    continue
                if not response.is_success:
                    raise _Failed(f"HTTP {response.status_code}", response.status_code)
                ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if ctype not in _HTML_TYPES:
                    raise _Failed(f"not HTML ({ctype or 'no content type'})", response.status_code)
                body = await self._read(response, self.settings.max_bytes)
                encoding = response.charset_encoding or "utf-8"
                return (
                    current,
                    response.status_code,
                    body.decode(encoding, errors="replace"),
                    _stamp(response),
                    bool(response.extensions.get("caching", {}).get("from_cache")),
                )
            finally:
                await response.aclose()
        raise _Failed(f"too many redirects (more than {self.settings.max_redirects})")

    async def _read(self, response: httpx.Response, limit: int) -> bytes:
        """The body, or `_Failed` past `limit` bytes or past the deadline (a trickling server)."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise _Failed(f"too big ({declared} bytes, limit {limit})", response.status_code)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.settings.timeout):
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise _Failed(f"too big (over {limit} bytes)", response.status_code)
                    chunks.append(chunk)
        except TimeoutError:
            raise _Failed("timeout (reading the body)", response.status_code) from None
        return b"".join(chunks)

    async def _allowed(self, url: str) -> bool:
        key = origin(url)
        lock = self._robots_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key not in self._robots:
                self._robots[key] = await self._fetch_robots(key)
        rules = self._robots[key]
        if isinstance(rules, str):
            raise _Failed(f"robots.txt unreachable ({rules}): not fetched, as RFC 9309 says")
        return rules is None or rules.can_fetch(url, self.settings.product)

    async def _fetch_robots(self, key: str) -> Protego | str | None:
        """The origin's rules; None when there are none (4xx); a reason when unreachable."""
        current = f"{key}/robots.txt"
        for _hop in range(5):
            try:
                await check_url(current, allow_private=self.settings.allow_private)
                response = await self._client.send(
                    self._client.build_request("GET", current), stream=True
                )
            except (Refused, httpx.HTTPError) as exc:
                return f"{type(exc).__name__}: {exc}"
            try:
                if response.is_redirect:
                    current = _next_hop(current, response)
                    continue
                if 400 <= response.status_code < 500:
                    return None
                if not response.is_success:
                    return f"HTTP {response.status_code}"
                body = await self._read(response, _ROBOTS_MAX_BYTES)
            except _Failed as exc:
                return str(exc)
            finally:
                await response.aclose()
            rules = Protego.parse(body.decode("utf-8", errors="replace"))
            delay = rules.crawl_delay(self.settings.product)
            if delay and delay > self.settings.min_interval:
                wider = _spacing(min(delay, self.settings.max_crawl_delay))
                await wider.acquire()  # the robots.txt request just made counts
                self._limiters[key] = wider
            return rules
        return "too many redirects"


def _spacing(interval: float) -> AsyncLimiter:
    """One request per `interval` seconds, no burst."""
    return AsyncLimiter(1, interval) if interval > 0 else AsyncLimiter(1_000_000, 1)


def _next_hop(current: str, response: httpx.Response) -> str:
    location = response.headers.get("location")
    if not location:
        raise _Failed(f"redirect without a Location ({response.status_code})")
    return str(urljoin(current, location))


def _stamp(response: httpx.Response) -> datetime:
    try:
        return datetime.fromisoformat(response.headers[_FETCHED_AT])
    except (KeyError, ValueError):
        return datetime.now(UTC)


def _failed(url: str, kind: str, error: str, status: int | None = None) -> Page:
    return Page(url=url, kind=kind, fetched_at=datetime.now(UTC), status=status, error=error)
