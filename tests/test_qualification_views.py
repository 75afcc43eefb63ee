"""The reviewer sees the qualification card and website facts' quotes, in the terminal and in the
web inbox: every value escaped (facts are hostile text), URLs as text never links, a stale page
marked, and a thread checkpointed before the card existed still shown."""

from __future__ import annotations

import contextlib
import os
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console

from agents.qualify import qualify
from gtm.app.ledger import ThreadRow
from gtm.cli.review import draft_view
from gtm.domain.approval import ApprovalRequest
from gtm.domain.models import Account, Contact, Draft, Fact
from gtm.domain.playbook import load_playbook
from gtm.domain.qualification import STATE_FIELD, Qualification
from gtm.web.app import WebInbox
from gtm.web.security import Session
from gtm.web.views import QueueFilters, qualification_card

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
HOSTILE = '<script>alert("x")</script>[bold]loud[/bold]'
ACCOUNT = Account(account_id="acme.ai", company="Acme AI", domain="acme.ai", segment="legal tech")
CONTACT = Contact(name="Mei Chen", title="VP Engineering", email="mei@acme.ai")
FACTS = (
    Fact(
        id="f1",
        text="Mei Chen is VP Engineering at Acme AI.",
        source="l.csv:2:contact_title",
        kind="person",
    ),
    Fact(
        id="f2",
        text=f"Acme AI is struggling with search latency {HOSTILE}.",
        source="https://acme.ai/blog/latency",
        kind="website",
        url="https://acme.ai/blog/latency",
        quote=f"We are struggling with search latency {HOSTILE}.",
        published=date(2026, 11, 20),
        fetched_at=datetime(2026, 12, 4, 8, 30, tzinfo=UTC),
    ),
    Fact(
        id="f3",
        text="Acme AI moved its docs to a new platform.",
        source="https://acme.ai/changelog",
        kind="website",
        url="https://acme.ai/changelog",
        quote="We moved our docs to a new platform.",
        published=date(2023, 3, 1),
        fetched_at=datetime(2026, 12, 4, 8, 31, tzinfo=UTC),
        stale=True,
    ),
    Fact(id="f4", text="Acme AI: sign-ups: 12", source="l.csv:2:Sign-ups", kind="signal"),
)
DRAFT = Draft(
    channel="linkedin",
    step="linkedin_connect",
    body="Hi Mei, saw the latency post and the docs move. Open to compare notes?",
    cited_fact_ids=("f2", "f3"),
    prompt_version="personalize@3",
    model="scripted",
)
REQUEST = ApprovalRequest(
    account_id="acme.ai",
    company="Acme AI",
    tier=1,
    review="always",
    contact=CONTACT,
    draft=DRAFT,
    facts=FACTS,
)
ROW = ThreadRow(
    id=7,
    campaign="spring",
    account_id="acme.ai",
    thread_id="spring:acme.ai",
    company="Acme AI",
    channel="linkedin",
    tier=1,
    status="waiting_for_approval",
    skip_reason=None,
    detail="",
    flagged=False,
    contact="Mei Chen, VP Engineering",
    preview=DRAFT.body[:40],
    deciding=False,
    decided_by=None,
    decided_at=None,
    decision=None,
    waiting_since=NOW,
    updated_at=NOW,
)
CARD = qualify(ACCOUNT, CONTACT, FACTS, load_playbook())


def test_the_card_names_the_facts_behind_each_value() -> None:
    assert [ev.fact_id for ev in CARD.element("economic_buyer").evidence] == ["f1"]
    assert [ev.fact_id for ev in CARD.element("identified_pain").evidence] == ["f2"]
    assert "f3" not in CARD.fact_ids()  # stale: backs nothing
    assert [(s.name, s.value, s.met) for s in CARD.pql][0] == ("signups", "12", True)


def _terminal(card: Qualification | None) -> str:
    console = Console(record=True, width=160, color_system=None)
    console.print(draft_view(ROW, REQUEST, [], card))
    return console.export_text()


def test_the_terminal_inbox_shows_card_quotes_dates_and_the_stale_mark() -> None:
    text = _terminal(CARD)
    assert "Qualification (score 7 of 17)" in text
    assert re.search(r"Economic buyer: Mei Chen is VP Engineering at Acme AI\. \[f1\]", text)
    assert re.search(r"Identified pain: .*\[f2\]", text)
    assert re.search(r"Champion: unknown", text)
    assert re.search(r"sign-ups: 12 \(meets the bar of 3\) \[f4\]", text)
    assert re.search(r"active users: unknown", text)
    assert "“We are struggling with search latency" in text
    assert "published 2026-11-20 · fetched 2026-12-04 08:30 UTC" in text
    assert re.search(r"published 2023-03-01 .*STALE: not news", text)
    # hostile text shows as written: markup neither applied nor swallowed
    assert text.count("[bold]loud[/bold]") >= 3  # fact, quote, card value
    # a website fact's URL is its source: shown once, not twice
    assert "(https://acme.ai/blog/latency)" in text


def test_a_thread_without_a_card_still_shows_in_the_terminal() -> None:
    text = _terminal(None)
    assert "Qualification" not in text
    assert "Hi Mei, saw the latency post" in text


def _html(card: Qualification | None) -> str:
    inbox = WebInbox(cast(Any, None), "token", contextlib.AsyncExitStack())
    cited = [f for f in FACTS if f.id in DRAFT.cited_fact_ids]
    ctx: dict[str, Any] = {
        "session": Session(reviewer="ana", csrf="c"),
        "row": ROW,
        "filters": QueueFilters(),
        "prev_id": None,
        "next_id": None,
        "batch_ok": False,
        "error": None,
        "notes": [],
        "edited": None,
        "flash": [],
        "worker_error": None,
        "history": [],
        "standing": None,
        "now": NOW,
        "draft": DRAFT,
        "cited": cited,
        "missing_citations": [],
        "other_facts": [f for f in FACTS if f not in cited],
        "quarantined": [],
        "findings": (),
        "spans": [],
        "unsendable": [],
        "contact": CONTACT,
        "account": ACCOUNT,
        "crm": {},
        "touches": [],
        "card": card,
    }
    return bytes(inbox.render("draft.html", **ctx).body).decode()


def test_the_web_draft_page_shows_the_card_and_quotes_escaped_and_unlinked() -> None:
    page = _html(qualification_card({STATE_FIELD: CARD.model_dump(mode="json")}))
    assert '<section id="qualification">' in page
    assert "score 7 of 17" in page
    assert re.search(r'id="card-economic_buyer">Mei Chen is VP Engineering at Acme AI\.', page)
    assert re.search(r'id="card-economic_buyer">[^<]*<span class="fid" [^>]*>\[f1\]', page)
    assert re.search(r'id="card-champion"><span class="hint">unknown</span></dd>', page)
    assert re.search(r'id="card-pql-signups">12 \(meets the bar of 3\)', page)
    assert '<blockquote class="quote">“We are struggling' in page
    assert "published 2026-11-20 · fetched 2026-12-04 08:30 UTC" in page
    assert re.search(r"published 2023-03-01.*<span class=\"badge flag stale\"", page)
    # hostile text is escaped everywhere, website URLs are never links
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'href="https://acme.ai' not in page
    assert "https://acme.ai/blog/latency" in page


def test_a_thread_checkpointed_before_the_card_existed_still_renders() -> None:
    for values in ({}, {STATE_FIELD: None}, {STATE_FIELD: {"not": "a card"}}):
        card = qualification_card(values)
        assert card is None
        page = _html(card)
        assert 'id="qualification"' not in page
        assert 'id="draft-body"' in page


CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(os.environ.get("GTM_SCREENSHOTS") or ROOT / ".gtm" / "screenshots")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="test_web_browser.py fails loudly without it")
def test_the_card_in_a_real_browser() -> None:
    """The page as Chromium lays it out, with the inbox's own CSS and JS; nothing is fetched:
    Playwright answers every request of the page itself."""
    from playwright.sync_api import Route, expect, sync_playwright

    html = _html(CARD)
    static = ROOT / "gtm" / "web" / "static"

    def answer(route: Route) -> None:
        path = route.request.url.split("127.0.0.1:9", 1)[1]
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
            kind = "text/css" if name.endswith(".css") else "text/javascript"
            route.fulfill(body=(static / name).read_text("utf-8"), content_type=kind)
        elif path == "/drafts/7":
            route.fulfill(body=html, content_type="text/html")
        else:
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("dialog", lambda d: pytest.fail(f"a dialog opened: {d.message}"))
            page.route("**/*", answer)
            page.goto("http://127.0.0.1:9/drafts/7")
            card = page.locator("#qualification")
            expect(card).to_be_visible()
            expect(page.locator("#card-economic_buyer")).to_contain_text("[f1]")
            expect(page.locator("#card-champion")).to_have_text("unknown")
            expect(page.locator("#facts blockquote.quote").first).to_be_visible()
            expect(page.locator("#facts .stale")).to_have_text("stale")
            assert page.locator("#facts a").count() == 0  # website facts: no links
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / "draft-card.png"), full_page=True)
        finally:
            browser.close()
