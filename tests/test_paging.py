"""Paged listings of the review queue: the web queue, `gtm inbox` and `gtm status`.

Every draft appears on exactly one page, in one stable order (the web queue: campaign, tier in
priority order with "no tier" last, oldest first, the row id breaking ties; `gtm inbox`: oldest
first); totals and group counts cover every page; a page past the end or not a number gets a
clear message. The web queue is asked over ASGI (Starlette's TestClient, as the other web
tests do) on a ledger seeded under tmp_path; `gtm inbox` reads real drafts, made by the real
pipeline against the scripted model server.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gtm.app.ledger import Ledger, ThreadRow
from gtm.app.settings import Settings
from gtm.app.waiting import Page, PageError, WaitingMatch, page_number
from gtm.app.workspace import open_workspace
from gtm.domain.models import Account, AccountStatus, Decision
from gtm.domain.playbook import Playbook, load_playbook
from gtm.domain.threads import thread_id_for
from gtm.web.views import PAGE_SIZE, QueueFilters, build_queue, queue_after, queue_neighbours
from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.web import WEB_ACCOUNTS, seed

pytestmark = pytest.mark.timeout(300)

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WAITING = 123
"""Three pages of the web queue (50 a page)."""


def _seed_ledger(path: Path) -> None:
    """`WAITING` drafts over three campaigns, every tier and none, both channels, some flagged,
    many sharing a waiting time (so only the id can order them); three of them being decided;
    and rows that are not waiting at all."""
    at = [START]
    ledger = Ledger(path, clock=lambda: at[0])
    tiers = (1, 2, 3, None)
    try:
        for i in range(WAITING + 8):
            campaign = ("alpha", "beta", "gamma")[i % 3]
            account = Account(account_id=f"a{i}", company=f"Company {i:03d}", domain=f"c{i}.io")
            at[0] = START + timedelta(minutes=(i * 7) % 40)  # ties: i and i + 40 share a minute
            row = ledger.ensure(campaign, account, "email" if i % 2 else "linkedin")
            status: AccountStatus = "waiting_for_approval" if i < WAITING else "sent"
            ledger.update(
                row.thread_id,
                status=status,
                tier=tiers[i % 4],
                flagged=i % 5 == 0,
                preview=f"draft {i}",
            )
            if i in (4, 50, 99):  # a decision recorded, not yet applied: left the web queue
                decision = Decision(action="approve", reviewer="r", at=START)
                ledger.record_decision(row.id, decision=decision, interrupt_id="x")
    finally:
        ledger.close()


def ledger_playbook() -> Playbook:
    return load_playbook(None)


def _queue_key(r: ThreadRow) -> tuple[str, int, datetime, int]:
    return (r.campaign, r.tier or 99, r.waiting_since or r.updated_at, r.id)


@pytest.fixture
def ledger_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    _seed_ledger(data / "ledger.sqlite")
    return data


@pytest.fixture
def ledger(ledger_dir: Path) -> Iterator[Ledger]:
    led = Ledger(ledger_dir / "ledger.sqlite")
    yield led
    led.close()


def _expected_queue(ledger: Ledger, keep: QueueFilters | None = None) -> list[ThreadRow]:
    """The queue's order as the web inbox has always sorted it, in Python over every row."""
    keep = keep or QueueFilters()
    rows = [r for r in ledger.rows(status="waiting_for_approval") if not r.deciding]
    return sorted((r for r in rows if keep.keep(r)), key=_queue_key)


# --------------------------------------------------------------------------- pages and order


def test_page_arithmetic_and_bad_page_numbers() -> None:
    p = Page(number=2, size=50, total=123)
    assert (p.pages, p.offset, p.first, p.last) == (3, 50, 51, 100)
    assert p.line() == "showing 51–100 of 123 (page 2 of 3)"
    assert Page(number=3, size=50, total=123).line() == "showing 101–123 of 123 (page 3 of 3)"
    assert Page(number=1, size=50, total=0).pages == 1  # an empty listing still has a page 1
    assert not Page(number=1, size=50, total=50).several
    assert Page(number=1, size=None, total=10_000).limit == 10_000
    Page(number=3, size=50, total=123).check()
    with pytest.raises(PageError, match=r"there is no page 4: 123 draft\(s\) make 3 page\(s\)"):
        Page(number=4, size=50, total=123).check()
    assert page_number(None) == page_number("") == 1
    assert page_number(" 7 ") == 7
    for bad in ("0", "-1", "two", "1.5", "1e3"):
        with pytest.raises(PageError, match="is not a page number: pages count from 1"):
            page_number(bad)


def test_every_draft_is_on_exactly_one_page_in_the_queues_order(ledger: Ledger) -> None:
    now = START + timedelta(days=1)
    expected = _expected_queue(ledger)
    assert len(expected) == WAITING - 3
    seen: list[int] = []
    for number in (1, 2, 3):
        q = build_queue(ledger, ledger_playbook(), QueueFilters(), now=now, page=number)
        q.page.check()
        assert q.matching == q.total == WAITING - 3
        seen += [r.id for g in q.groups for r in g.rows]
        for g in q.groups:  # a group's count covers every page, not this page's part
            members = [
                r for r in expected if (r.campaign, r.tier or 0) == (g.campaign, g.tier or 0)
            ]
            assert g.total == len(members) and g.flagged == sum(r.flagged for r in members)
            assert g.since == min(r.waiting_since or r.updated_at for r in members)
    assert seen == [r.id for r in expected]
    past = build_queue(ledger, ledger_playbook(), QueueFilters(), now=now, page=4)
    assert past.groups == []
    with pytest.raises(PageError, match="there is no page 4"):
        past.page.check()


def test_filters_page_the_kept_drafts_and_count_them_all(ledger: Ledger) -> None:
    now = START + timedelta(days=1)
    for filters in (
        QueueFilters(tier=2),
        QueueFilters(channel="email", flagged=False),
        QueueFilters(campaign="beta", tier=1),
    ):
        expected = [r.id for r in _expected_queue(ledger, filters)]
        first = build_queue(ledger, ledger_playbook(), filters, now=now, size=7)
        seen = []
        for number in range(1, first.page.pages + 1):
            q = build_queue(ledger, ledger_playbook(), filters, now=now, page=number, size=7)
            assert q.matching == len(expected) and q.total == WAITING - 3
            seen += [r.id for g in q.groups for r in g.rows]
        assert seen == expected, filters


def test_neighbours_cross_pages_and_a_draft_not_in_the_queue_leads_to_the_first(
    ledger: Ledger,
) -> None:
    order = [r.id for r in _expected_queue(ledger)]
    for i, row_id in enumerate(order):
        row = ledger.get(row_id)
        assert row is not None
        prev_id = order[i - 1] if i else None
        next_id = order[i + 1] if i + 1 < len(order) else None
        assert queue_neighbours(ledger, QueueFilters(), row) == (prev_id, next_id)
        assert queue_after(ledger, QueueFilters(), row) == (next_id or prev_id)
    deciding = next(r for r in ledger.rows(status="waiting_for_approval") if r.deciding)
    assert queue_neighbours(ledger, QueueFilters(), deciding) == (None, order[0])
    assert queue_after(ledger, QueueFilters(), deciding) == order[0]


def test_oldest_first_pages_hold_every_waiting_draft_once(ledger: Ledger) -> None:
    """`gtm inbox`'s order, drafts being decided included (as it has always listed them)."""
    waiting = ledger.rows(status="waiting_for_approval")
    expected = [r.id for r in sorted(waiting, key=lambda r: (r.waiting_since, r.id))]
    match = WaitingMatch()
    assert match.count(ledger) == WAITING
    seen = []
    for number in range(1, Page(number=1, size=10, total=WAITING).pages + 1):
        page = Page(number=number, size=10, total=WAITING)
        seen += [r.id for r in match.rows(ledger, "oldest", limit=page.limit, offset=page.offset)]
    assert seen == expected


# --------------------------------------------------------------------------- the web queue


@pytest.fixture
def client(ledger_dir: Path) -> Iterator[TestClient]:
    from gtm.web.app import create_app

    app = create_app(Settings(data_dir=ledger_dir), token="t0ken")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.post("/login", data={"token": "t0ken", "reviewer": "pat"}, follow_redirects=False)
        assert r.status_code == 303, r.text
        yield c


def _ids(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr class="row[^"]*" data-id="(\d+)"', page)]


def test_the_web_queue_pages_every_draft_once_with_totals_and_links(
    client: TestClient, ledger: Ledger
) -> None:
    expected = [r.id for r in _expected_queue(ledger)]
    seen = []
    for number in (1, 2, 3):
        r = client.get("/", params={"page": str(number)})
        assert r.status_code == 200
        seen += _ids(r.text)
        first, last = (number - 1) * PAGE_SIZE + 1, min(number * PAGE_SIZE, len(expected))
        assert f"showing {first}–{last} of {len(expected)} (page {number} of 3)" in r.text
        assert ('rel="next"' in r.text) == (number < 3)
        assert ('rel="prev"' in r.text) == (number > 1)
        assert f"{len(expected)} drafts waiting" in r.text
    assert seen == expected
    assert _ids(client.get("/").text) == expected[:PAGE_SIZE]  # no page: the first
    # A group split over pages says how many of it are on this one.
    assert re.search(r"\d+ waiting.*?· \d+ on this page", client.get("/?page=1").text, re.S)


def test_the_web_queue_keeps_filters_in_its_page_links(client: TestClient, ledger: Ledger) -> None:
    expected = [r.id for r in _expected_queue(ledger, QueueFilters(channel="linkedin"))]
    assert PAGE_SIZE < len(expected) <= 2 * PAGE_SIZE
    one = client.get("/", params={"channel": "linkedin"}).text
    assert 'href="/?channel=linkedin&amp;page=2" rel="next"' in one
    two = client.get("/", params={"channel": "linkedin", "page": "2"}).text
    assert _ids(one) + _ids(two) == expected
    # One page's worth: no paging line, the page as it always was.
    small = client.get("/", params={"campaign": "beta", "tier": "1"}).text
    assert "showing" not in small and 'id="pager-top"' not in small
    n = len(_expected_queue(ledger, QueueFilters(campaign="beta", tier=1)))
    assert _ids(small) and len(_ids(small)) == n and f"· {n} shown" in small


def test_a_bad_or_missing_page_says_so_clearly(client: TestClient) -> None:
    past = client.get("/", params={"page": "4"})
    assert past.status_code == 404
    assert "There is no page 4: 120 draft(s) make 3 page(s) of 50" in past.text
    assert 'href="/?page=3">last page (3)</a>' in past.text and not _ids(past.text)
    for bad in ("0", "abc", "-2"):
        r = client.get("/", params={"page": bad})
        assert r.status_code == 400
        assert "is not a page number: pages count from 1" in r.text and not _ids(r.text)


# --------------------------------------------------------------------------- gtm inbox, gtm status


@pytest.fixture(scope="module")
def drafts(tmp_path_factory: pytest.TempPathFactory, model_server: ScriptedOpenAIServer) -> Path:
    data = tmp_path_factory.mktemp("paging-cli")
    seed(data, model_server.base_url, [("spring", "linkedin", WEB_ACCOUNTS)])
    return data


def _inbox(data: Path, *args: str) -> tuple[int, str]:
    from gtm.cli import app

    result = CliRunner().invoke(
        app, ["--data-dir", str(data), "inbox", *args], env={"COLUMNS": "200", "NO_COLOR": "1"}
    )
    return result.exit_code, result.output


def test_gtm_inbox_pages_every_draft_once_oldest_first(drafts: Path) -> None:
    led = Ledger(drafts / "ledger.sqlite")
    try:
        waiting = led.rows(status="waiting_for_approval")
    finally:
        led.close()
    expected = [r.id for r in sorted(waiting, key=lambda r: (r.waiting_since, r.id))]
    assert len(expected) >= 5, "the seeded campaign should leave several drafts waiting"
    pages = -(-len(expected) // 2)
    seen: list[int] = []
    for number in range(1, pages + 1):
        code, text = _inbox(drafts, "--limit", "2", "--page", str(number))
        assert code == 0, text
        seen += [int(i) for i in re.findall(r"╭─ #(\d+)", text)]
        last = min(number * 2, len(expected))
        assert f"showing {number * 2 - 1}–{last} of {len(expected)} (page {number} of {pages})" in (
            " ".join(text.split())
        )
    assert seen == expected
    # The whole queue on one page: today's listing and last line, unchanged.
    code, text = _inbox(drafts)
    assert code == 0 and [int(i) for i in re.findall(r"╭─ #(\d+)", text)] == expected
    assert text.rstrip().endswith(f"{len(expected)} draft(s) waiting.") and "showing" not in text
    code, text = _inbox(drafts, "--all")
    assert code == 0 and [int(i) for i in re.findall(r"╭─ #(\d+)", text)] == expected


def test_gtm_inbox_refuses_pages_that_are_not_there(drafts: Path) -> None:
    n = len(re.findall(r"╭─ #(\d+)", _inbox(drafts, "--all")[1]))
    code, text = _inbox(drafts, "--limit", "2", "--page", str(-(-n // 2) + 1))
    assert code == 2
    assert f"there is no page {-(-n // 2) + 1}: {n} draft(s) make {-(-n // 2)} page(s) of 2" in (
        " ".join(text.split())
    )
    assert "╭─ #" not in text
    code, text = _inbox(drafts, "--page", "0")
    assert code == 2 and "--page" in text
    code, text = _inbox(drafts, "--all", "--page", "2")
    assert code == 2 and "--all shows every draft on one page" in text


def test_gtm_status_counts_by_aggregate_and_pages_its_sequences(tmp_path: Path) -> None:
    from gtm.cli import app

    data = tmp_path / "data"

    async def go() -> list[int]:
        async with open_workspace(Settings(data_dir=data), with_model=False) as ws:
            ids = []
            for i in range(7):
                account = Account(account_id=f"s{i}", company=f"Seq {i}", domain=f"s{i}.io")
                ws.ledger.ensure("seqs", account, "email")
                tid = thread_id_for("seqs", f"s{i}")
                ws.ledger.update(tid, status="sent" if i else "waiting_for_approval", tier=2)
                ws.ledger.set_sequence(tid, position=i % 2, next_due=None)
                ids.append(ws.ledger.get(tid).id)  # type: ignore[union-attr]
            return ids

    ids = asyncio.run(go())
    expected = ids[1:]  # id order; the waiting first touch (seq_pos 0) has no standing
    assert expected == sorted(expected)

    def status(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            app, ["--data-dir", str(data), "status", *args], env={"COLUMNS": "200"}
        )
        return result.exit_code, result.output

    code, text = status()
    assert code == 0, text
    assert "campaign seqs: 7 account(s)" in text
    assert re.search(r"│ sent\s+│\s+6 │", text) and re.search(
        r"waiting_for_approval\s+│\s+1 │", text
    )
    assert "sequences in seqs: 6 thread(s) past the first touch" in text and "showing" not in text
    seen = []
    for number in (1, 2, 3):
        code, text = status("--limit", "2", "--page", str(number))
        assert code == 0, text
        seen += [int(i) for i in re.findall(r"│\s+(\d+) │ Seq \d", text)]
        assert f"sequences in seqs: showing {2 * number - 1}–{2 * number} of 6" in text
    assert seen == expected
    code, text = status("--limit", "2", "--page", "4")
    assert code == 0, text
    assert "sequences in seqs: there is no page 4: 6 thread(s) make 3 page(s) of 2" in text
