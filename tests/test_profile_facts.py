"""LinkedIn profile facts from the user's own tools (issue 18, point 3): the profile columns of a
Dux-Soup visit export or a Sales Navigator scraper, and the list's notes, become facts about that
one contact, with the file, row and column they came from. Nothing is fetched from LinkedIn.
Hostile profile text is quarantined like any other research (tests/test_injection.py plants it).
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from agents.research import list_facts
from gtm.app.accounts import load_accounts
from gtm.app.list_columns import PROFILE_CHARS
from gtm.cli import app

EXPORTS = Path(__file__).parent / "fixtures" / "exports"


def test_a_dux_soup_visit_export_gives_profile_facts_with_their_cells() -> None:
    listing = load_accounts(EXPORTS / "duxsoup_visits.csv")
    (ravi,) = listing.accounts[0].contacts
    assert [(f.text, f.source, f.kind) for f in ravi.profile] == [
        (
            "Ravi Kumar's LinkedIn summary: Builds docs tooling",
            "duxsoup_visits.csv:2:Summary",
            "person",
        ),
        ("Ravi Kumar is based in Bangalore, India.", "duxsoup_visits.csv:2:Location", "person"),
        ("Our notes on Ravi Kumar: Met at DocsConf", "duxsoup_visits.csv:2:My Notes", "person"),
    ]
    assert listing.accounts[0].facts == ()  # about the person, not the company
    assert not any("summary" in w.lower() for w in listing.warnings)  # no longer ignored


def test_a_sales_navigator_scrape_gives_role_and_tenure() -> None:
    listing = load_accounts(EXPORTS / "sales_navigator_scraper.csv")
    (mei,) = listing.accounts[0].contacts
    texts = [f.text for f in mei.profile]
    assert "Mei Chen describes the current role as: Leads retrieval" in texts
    assert "Mei Chen has been in the current role since 2024-03." in texts
    assert {f.source for f in mei.profile} >= {
        "sales_navigator_scraper.csv:2:Job Description",
        "sales_navigator_scraper.csv:2:Job Started On",
    }


def test_research_uses_the_contacts_own_profile_and_not_a_colleagues(tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    long = "Builds retrieval for support teams. " * 30
    csv.write_text(
        "company,domain,contact_name,linkedin_url,headline,summary\n"
        'Helpline,helpline.io,Eva Novak,https://www.linkedin.com/in/eva-novak,Head of Support,"'
        + long
        + '"\n'
        "Helpline,helpline.io,Tom Berg,https://www.linkedin.com/in/tom-berg,"
        '"VP Eng, ex-Zendesk","Two lines\nof summary"\n',
        encoding="utf-8",
    )
    listing = load_accounts(csv)
    assert listing.errors == []
    (account,) = listing.accounts
    eva, tom = account.contacts

    about_eva = [text for _, text, _, _ in list_facts(account, eva)]
    assert "Eva Novak's LinkedIn headline: Head of Support" in about_eva
    assert not any("Tom Berg" in t for t in about_eva)
    (summary,) = [t for t in about_eva if "summary" in t]
    value = summary.split(": ", 1)[1]
    assert value.endswith(" …") and len(value) <= PROFILE_CHARS + 2  # the gist, not 1,000 chars

    about_tom = [(text, src) for _, text, src, _ in list_facts(account, tom)]
    assert ("Tom Berg's LinkedIn summary: Two lines of summary", "people.csv:3:summary") in (
        about_tom
    )
    assert not any("Eva Novak" in t for t, _ in about_tom)


def test_the_import_preview_shows_profile_facts() -> None:
    got = CliRunner().invoke(
        app, ["import", str(EXPORTS / "duxsoup_visits.csv"), "--dry-run"], env={"COLUMNS": "250"}
    )
    assert got.exit_code == 3, got.output  # the export's second row has no website: rejected
    assert "Ravi Kumar's LinkedIn summary: Builds docs tooling" in got.output
    assert "My Notes" in got.output and "notes" in got.output
