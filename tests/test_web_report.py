"""The web inbox's report page and its red-flag banner, in process (Starlette's test client) on
real stores under tmp_path.

History, put relative to now because the page reports as of now: in campaign spring, 20
connection requests (tier 1, seat-1) on Monday of last ISO week, 2 accepted (10% against the
goal of 30% and the red flag under 15%), no meeting; campaign quiet has a ledger row and sent
nothing. The two red flags last week crosses are raised as a run would raise them.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gtm.app.charts import week_label
from gtm.app.red_flags import StoredFlag, raise_red_flags
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.models import Account
from tests.test_red_flag_wiring import Clock, seed

NOW = datetime.now(UTC)
_MONDAY = (NOW - timedelta(days=NOW.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
SENT = _MONDAY - timedelta(days=7) + timedelta(minutes=1)
"""Monday of last ISO week: that week is over and its requests are at least 7 days old."""
LAST_WEEK = week_label(SENT.date())


@dataclass
class Seeded:
    data: Path
    flags: list[StoredFlag]


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    data, clock = tmp_path / "data", Clock()

    async def go() -> list[StoredFlag]:
        async with open_workspace(Settings(data_dir=data), with_model=False, clock=clock) as ws:
            seed(ws, clock, at=SENT, accepted_at=SENT + timedelta(hours=2))
            quiet = Account(account_id="quiet.example", company="Quiet", domain="quiet.example")
            ws.ledger.ensure("quiet", quiet, "email")
            clock.now = NOW
            return await raise_red_flags(ws)

    flags = asyncio.run(go())
    assert sorted(f.flag for f in flags) == ["accept_rate_below", "meetings_per_week_below"]
    return Seeded(data, flags)


def _client(data: Path) -> Iterator[TestClient]:
    from gtm.web.app import create_app

    app = create_app(Settings(data_dir=data), token="t0ken")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.post("/login", data={"token": "t0ken", "reviewer": "rita"}, follow_redirects=False)
        assert r.status_code == 303, r.text
        yield c


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient]:
    yield from _client(seeded.data)


def _text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def _card(html: str, campaign: str) -> str:
    return html.split(f'data-campaign="{campaign}"', 1)[1].split("</section>", 1)[0]


def test_the_report_needs_a_signed_in_reviewer(seeded: Seeded) -> None:
    from gtm.web.app import create_app

    with TestClient(create_app(Settings(data_dir=seeded.data), token="t0ken")) as anon:
        page = anon.get("/report", headers={"host": "127.0.0.1"})
        assert page.status_code == 401 and "Sign in" in page.text
        assert "<svg" not in page.text and "spring" not in page.text


def test_the_queue_links_to_the_report_with_charts_tables_goals_and_flags(
    client: TestClient,
) -> None:
    queue = client.get("/")
    assert 'href="/report" id="report-link"' in queue.text
    page = client.get("/report")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    # The charts are inline SVG that the strict CSP lets through: no style, no script, no URL.
    assert '<svg id="funnel-linkedin-spring"' in page.text
    assert '<svg id="trend-accept-spring"' in page.text
    assert '<svg id="trend-meetings-spring"' in page.text
    assert " style=" not in page.text and "<style" not in page.text
    assert page.text.count("<script") == 1 and 'src="/static/app.js"' in page.text
    spring = _text(_card(page.text, "spring"))
    # This week's table: last week complete, this week so far; each rate with its count.
    assert f"{LAST_WEEK} (complete)" in spring
    assert "connection requests 20" in spring and "accepted 2" in spring
    assert "accept rate 10.0% (2/20)" in spring
    # Beside the goals, and the red flags the weeks cross (the alert's words).
    assert f"{LAST_WEEK} accept 2/20 = 10.0%, goal 30% missed" in spring
    assert f"{LAST_WEEK} meetings 0, goal 5 a week missed" in spring
    assert "the LinkedIn accept rate is 10.0% (2 of 20" in spring
    assert "below the red-flag threshold of 15%" in spring
    # The campaign that sent nothing says so instead of showing zeros as if they meant much.
    assert "no data yet: nothing sent in these weeks" in _text(_card(page.text, "quiet"))


def test_filters_narrow_the_report_and_show_in_the_form(client: TestClient) -> None:
    page = client.get("/report?campaign=spring&tier=1&channel=linkedin&seat=seat-1&weeks=3")
    assert page.status_code == 200
    text = _text(page.text)
    assert "filters: campaign spring, tier 1, channel linkedin, seat seat-1" in text
    assert 'data-campaign="quiet"' not in page.text
    assert "accept rate 10.0% (2/20)" in text
    # Three weeks: the span ends with this week.
    assert f"to {week_label(NOW.date())}" in text
    assert re.search(r'<option value="seat-1"\s+selected>', page.text)
    assert 'name="weeks" min="1" max="52" value="3"' in page.text
    # Red flags are about a whole campaign: a tier filter says so rather than re-evaluate.
    assert "clear the tier, channel and seat filters to see them" in text
    # Tier 2 sent nothing in spring: no data yet, and no division by zero.
    tier2 = client.get("/report?campaign=spring&tier=2")
    assert tier2.status_code == 200
    assert "no data yet: nothing sent in these weeks" in _text(_card(tier2.text, "spring"))
    assert "gtm-chart-empty" in tier2.text
    email = client.get("/report?channel=email")
    assert email.status_code == 200 and "connection requests 20" not in _text(email.text)


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("weeks=0", "weeks"),
        ("weeks=53", "weeks"),
        ("weeks=abc", "weeks"),
        ("weeks=%C2%B2", "weeks"),  # a superscript two: a digit to isdigit(), not to int()
        ("weeks=-1", "weeks"),
        ("tier=x", "tier"),
        ("tier=1.5", "tier"),
        ("channel=fax", "channel"),
        ("campaign=nope", "campaign"),
        ("seat=nobody", "seat"),
        ("campaign=spring&campaign=quiet", "campaign"),
        ("weeks=" + "9" * 400, "weeks"),
    ],
)
def test_a_bad_filter_is_a_400_naming_the_parameter(
    client: TestClient, query: str, name: str
) -> None:
    page = client.get(f"/report?{query}")
    assert page.status_code == 400, page.text
    assert f"Bad report filter: {name}" in page.text
    assert 'href="/report"' in page.text
    assert "9" * 100 not in page.text  # a long value is cut short in the message


def test_an_empty_data_dir_shows_no_data_yet(tmp_path: Path) -> None:
    for c in _client(tmp_path / "empty"):
        page = c.get("/report")
        assert page.status_code == 200
        assert "no data yet: nothing sent and no campaign yet" in _text(page.text)


def _dismissed(data: Path, flag_id: int) -> tuple[str | None, str | None]:
    with sqlite3.connect(data / "funnel.sqlite") as db:
        row = db.execute(
            "SELECT dismissed_at, dismissed_by FROM red_flags WHERE id = ?", (flag_id,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF token on the page"
    return m.group(1)


def test_the_queue_banner_shows_each_open_flag_and_dismisses_it_once(
    seeded: Seeded, client: TestClient
) -> None:
    accept = next(f for f in seeded.flags if f.flag == "accept_rate_below")
    page = client.get("/")
    assert "Red flags (2)" in page.text
    row = _text(page.text.split(f'data-flag="{accept.id}">', 1)[1].split("</tr>", 1)[0])
    assert row.startswith(
        f"{accept.id} accept rate 10.0% below 15% 20 {LAST_WEEK} (from {SENT:%Y-%m-%d}) spring"
    )
    # Before the queue's own sections: at the top.
    assert page.text.index('id="red-flags"') < page.text.index('class="summary"')
    token = _csrf(page.text)

    # Refused without the session's CSRF token, from another site, or without a session.
    url = f"/flags/{accept.id}/dismiss"
    assert client.post(url, data={}, follow_redirects=False).status_code == 403
    assert client.post(url, data={"csrf": "guess"}, follow_redirects=False).status_code == 403
    elsewhere = client.post(
        url, data={"csrf": token}, headers={"origin": "https://evil.example"},
        follow_redirects=False,
    )  # fmt: skip
    assert elsewhere.status_code == 403
    assert _dismissed(seeded.data, accept.id) == (None, None)

    done = client.post(url, data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/"
    at, by = _dismissed(seeded.data, accept.id)
    assert at is not None and by == "rita"  # the signed-in reviewer, not the default one
    back = client.get("/")
    assert f"Red flag {accept.id} (spring, week of {SENT:%Y-%m-%d}) dismissed." in back.text
    assert "Red flags (1)" in back.text and f'data-flag="{accept.id}"' not in back.text

    again = client.post(url, data={"csrf": token}, follow_redirects=True)
    assert again.status_code == 200
    assert f"Red flag {accept.id} was already dismissed at" in again.text
    assert _dismissed(seeded.data, accept.id) == (at, by)
    missing = client.post("/flags/9999/dismiss", data={"csrf": token}, follow_redirects=True)
    assert "No red flag 9999." in missing.text

    # From the report page, Dismiss comes back to the report.
    other = next(f for f in seeded.flags if f.flag == "meetings_per_week_below")
    report = client.get("/report")
    assert f'action="/flags/{other.id}/dismiss?back=report"' in report.text
    from_report = client.post(
        f"/flags/{other.id}/dismiss?back=report", data={"csrf": token}, follow_redirects=False
    )
    assert from_report.headers["location"] == "/report"
    assert 'id="red-flags"' not in client.get("/").text  # none open any more

    client.cookies.clear()
    anon = client.post(url, data={"csrf": token}, follow_redirects=False)
    assert anon.status_code == 401
