"""The polite web fetcher against small websites on loopback (tests/support/sites.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from tests.support.sites import Site
from tools.web import WebResearcher, WebSettings
from tools.web_guard import Refused, check_url

CONTACT = "https://example.org/gtm-contact"


def settings(**kw: object) -> WebSettings:
    base: dict[str, object] = {
        "contact": CONTACT,
        "allow_private": True,
        "min_interval": 0.0,
        "timeout": 1.0,
        "max_bytes": 200_000,
    }
    base.update(kw)
    return WebSettings.model_validate(base)


@pytest.fixture
def site() -> Iterator[Site]:
    with Site("Acme") as s:
        yield s


async def test_home_and_the_pages_that_matter(site: Site, tmp_path: Path) -> None:
    async with WebResearcher(tmp_path, settings(max_pages=4)) as web:
        snap = await web.fetch_site(site.base_url + "/")
    assert [p.kind for p in snap.pages] == ["home", "about", "blog", "customers"]
    assert all(p.error is None and p.status == 200 for p in snap.pages), snap.pages
    home, about, blog, _ = snap.pages
    assert "More than 200 firms run Acme in production today." in home.text
    assert "founded in 2019 in Oslo" in about.text
    assert about.url == site.base_url + "/about"
    # off-site, mailto and unwanted links are not followed; nothing beyond max_pages
    assert set(site.paths()) == {"/robots.txt", "/", "/about", "/blog/", "/customers"}
    assert site.count("/robots.txt") == 1
    assert all(h.user_agent == f"gtm-agents/0.1 (+{CONTACT})" for h in site.hits)
    assert blog.published == date(2026, 3, 4)
    assert home.published is None  # the home page states no date; none is guessed
    assert all(p.fetched_at.tzinfo is not None for p in snap.pages)


async def test_a_second_run_reads_the_cache_and_keeps_the_fetch_time(
    site: Site, tmp_path: Path
) -> None:
    async with WebResearcher(tmp_path / "cache", settings()) as web:
        first = await web.fetch_site(site.base_url)
    before = site.paths()
    assert before["/"] == 1 and before["/about"] == 1
    async with WebResearcher(tmp_path / "cache", settings()) as web:  # a re-run
        second = await web.fetch_site(site.base_url)
    after = site.paths()
    # pages and robots.txt come from the cache: the server saw no new request
    assert after == before
    assert [p.text for p in second.pages] == [p.text for p in first.pages]
    assert all(p.from_cache for p in second.pages) and not any(p.from_cache for p in first.pages)
    assert [p.fetched_at for p in second.pages] == [p.fetched_at for p in first.pages]


async def test_one_origin_is_asked_at_most_once_per_interval(site: Site, tmp_path: Path) -> None:
    async with WebResearcher(tmp_path, settings(min_interval=0.25)) as web:
        snap = await web.fetch_site(site.base_url)
    assert len(snap.pages) == 5 and all(p.error is None for p in snap.pages)
    times = sorted(h.at for h in site.hits)
    assert len(times) == 6  # robots.txt + 5 pages
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.22, gaps  # a little slack for the clock reads on both sides


async def test_crawl_delay_in_robots_widens_the_gap(tmp_path: Path) -> None:
    with Site("Acme", robots="User-agent: *\nCrawl-delay: 0.4\n") as s:
        async with WebResearcher(tmp_path, settings(max_pages=3)) as web:
            snap = await web.fetch_site(s.base_url)
        times = sorted(h.at for h in s.hits)
    assert len(snap.pages) == 3
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.37


async def test_robots_disallow_is_honoured(site: Site, tmp_path: Path) -> None:
    async with WebResearcher(tmp_path, settings()) as web:
        ours = await web.fetch_page(site.base_url + "/members/list")
        # RFC 9309: the group naming our product replaces the `*` group, it does not add to it
        others = await web.fetch_page(site.base_url + "/private/x")
    assert ours.error == "robots.txt disallows /members/list"
    assert others.error is None and others.text == "secret"
    assert site.count("/members/list") == 0
    with Site("Acme", robots="User-agent: *\nDisallow: /private\n") as s:
        async with WebResearcher(tmp_path / "2", settings()) as web:
            everyone = await web.fetch_page(s.base_url + "/private/x")
            fine = await web.fetch_page(s.base_url + "/about")
        assert everyone.error == "robots.txt disallows /private/x"
        assert fine.error is None
        assert s.count("/private/x") == 0 and s.count("/about") == 1


async def test_a_redirect_into_a_disallowed_path_is_checked_again(tmp_path: Path) -> None:
    with Site("Acme", robots="User-agent: *\nDisallow: /about\n") as s:
        async with WebResearcher(tmp_path, settings()) as web:
            page = await web.fetch_page(s.base_url + "/moved-about")
        assert page.error == "robots.txt disallows /about"
        assert s.count("/about") == 0


@pytest.mark.parametrize(
    ("status", "fetched"), [(404, True), (500, False)], ids=["missing", "unreachable"]
)
async def test_robots_missing_allows_unreachable_forbids(
    tmp_path: Path, status: int, fetched: bool
) -> None:
    with Site("Acme") as s:
        s.robots_status = status
        async with WebResearcher(tmp_path, settings()) as web:
            page = await web.fetch_page(s.base_url + "/about")
        assert (page.error is None) is fetched, page.error
        assert s.count("/about") == (1 if fetched else 0)
    if not fetched:
        assert page.error is not None and page.error.startswith("robots.txt unreachable (HTTP 500")


async def test_bad_pages_become_errors_not_exceptions(site: Site, tmp_path: Path) -> None:
    async with WebResearcher(tmp_path, settings(timeout=0.5)) as web:
        got = {
            path: await web.fetch_page(site.base_url + path)
            for path in (
                "/slow",
                "/trickle",
                "/huge",
                "/huge-declared",
                "/loop-a",
                "/hop0",
                "/report.pdf",
                "/gone",
                "/nope",
            )
        }
    errors = {path: page.error for path, page in got.items()}
    assert errors == {
        "/slow": "timeout (ReadTimeout)",
        "/trickle": "timeout (reading the body)",
        "/huge": "too big (over 200000 bytes)",
        "/huge-declared": "too big (20000000 bytes, limit 200000)",
        "/loop-a": f"redirect loop: {site.base_url}/loop-a again",
        "/hop0": "too many redirects (more than 5)",
        "/report.pdf": "not HTML (application/pdf)",
        "/gone": "HTTP 500",
        "/nope": "HTTP 404",
    }
    assert all(p.text == "" for p in got.values())
    assert site.count("/hop5") == 1 and site.count("/hop6") == 0


async def test_unreachable_site_is_an_error_page(tmp_path: Path) -> None:
    with Site("Gone") as s:
        url = s.base_url
    async with WebResearcher(tmp_path, settings()) as web:
        snap = await web.fetch_site(url)
    assert len(snap.pages) == 1
    assert snap.pages[0].error is not None
    assert snap.pages[0].error.startswith("robots.txt unreachable (ConnectError")
    assert snap.readable == []


async def test_hidden_instructions_are_removed_and_reported(site: Site, tmp_path: Path) -> None:
    async with WebResearcher(tmp_path, settings()) as web:
        page = await web.fetch_page(site.base_url + "/team")
    assert page.error is None
    assert "Nora Vik leads engineering at Acme" in page.text
    assert "We hire in Oslo and Berlin; our roadmap is public." in page.text
    for payload in ("ignore", "Ignore", "discount", "reveal your prompt", "approved"):
        assert payload not in page.text
    assert not any(ch in page.text for ch in "\u200b\u2060")
    reasons = sorted(h.split(":", 1)[0] for h in page.hidden)
    assert reasons == [
        "HTML comment",
        "aria-hidden",
        "display",
        "hidden attribute",
        "invisible characters",
    ], page.hidden
    assert any("promise a discount" in h for h in page.hidden)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/about",
        "http://10.0.0.8/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/",
        "http://[::ffff:192.168.1.1]/",
        "ftp://example.org/",
        "file:///etc/passwd",
        "http://user:pw@example.org/",
    ],
)
async def test_only_public_http_is_fetched(url: str, tmp_path: Path) -> None:
    with pytest.raises(Refused):
        await check_url(url, allow_private=False)
    async with WebResearcher(tmp_path, settings(allow_private=False)) as web:
        page = await web.fetch_page(url)
    assert page.error is not None and page.status is None and page.text == ""


async def test_a_loopback_site_is_refused_without_the_test_flag(site: Site, tmp_path: Path) -> None:
    async with WebResearcher(tmp_path, settings(allow_private=False)) as web:
        snap = await web.fetch_site(site.base_url)
    assert snap.pages[0].error == "private address: 127.0.0.1 is not a public internet address"
    assert site.hits == []  # refused before any connection


async def test_a_redirect_to_a_private_address_is_refused(tmp_path: Path) -> None:
    """Each hop is checked: a public page may not send the fetcher into the local network.
    (A public address cannot be served here, so a mock transport plays the public site.)"""
    asked: list[str] = []

    def public_site(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        if request.url.path == "/robots.txt":
            return httpx.Response(404)
        return httpx.Response(302, headers={"Location": "http://10.1.2.3/admin"})

    transport = httpx.MockTransport(public_site)
    async with WebResearcher(tmp_path, settings(allow_private=False), transport=transport) as web:
        page = await web.fetch_page("http://93.184.215.14/start")
    assert page.error == "private address: 10.1.2.3 is not a public internet address"
    assert asked == ["http://93.184.215.14/robots.txt", "http://93.184.215.14/start"]


async def test_bare_domain_gets_https_and_fetch_time_is_now(tmp_path: Path) -> None:
    start = datetime.now(UTC)
    async with WebResearcher(tmp_path, settings(allow_private=False)) as web:
        snap = await web.fetch_site("127.0.0.1")
    assert snap.url == "https://127.0.0.1"
    assert snap.pages[0].error == "private address: 127.0.0.1 is not a public internet address"
    assert start <= snap.pages[0].fetched_at <= datetime.now(UTC)


async def test_the_connected_address_is_checked_too(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name passed the check, then resolved to loopback at connect time.
    The request went out, but nothing of the answer is read or cached."""

    async def passes(url: str, *, allow_private: bool) -> None:
        return None

    monkeypatch.setattr("tools.web.check_url", passes)
    async with WebResearcher(tmp_path, settings(allow_private=False)) as web:
        page = await web.fetch_page(site.base_url + "/about")
        again = await web.fetch_page(site.base_url + "/about")
    assert page.error == (
        "robots.txt unreachable (Refused: private address: 127.0.0.1 is not "
        "a public internet address): not fetched, as RFC 9309 says"
    )
    assert again.error == page.error and page.text == ""
    assert site.paths() == {"/robots.txt": 1}


async def test_a_cut_off_body_is_never_cached(site: Site, tmp_path: Path) -> None:
    async with WebResearcher(tmp_path, settings(timeout=0.5)) as web:
        for _ in range(2):
            assert (await web.fetch_page(site.base_url + "/huge")).error is not None
            assert (await web.fetch_page(site.base_url + "/trickle")).error is not None
    assert site.count("/huge") == 2 and site.count("/trickle") == 2
