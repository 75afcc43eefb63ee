"""One form per identifier: a person listed under one spelling is recognised under every other.

Issue 14, item 4: a profile URL in a country spelling (`de.linkedin.com`), without a scheme or
with `www.` only, slipped past the do-not-contact list, the CRM lookup and the outbox erasure;
junk was accepted as an entry. Lists written by earlier versions must keep working unchanged.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from gtm.domain.models import Account, Contact
from tools import suppression
from tools.crm import normalise_linkedin
from tools.local_crm import LocalCRM
from tools.local_outbox import LocalEmailOutbox, LocalLinkedInOutbox
from tools.suppression import SuppressionList

PROFILE = "https://www.linkedin.com/in/dana-ruiz"
SPELLINGS = [
    PROFILE,
    "https://de.linkedin.com/in/dana-ruiz",
    "www.linkedin.com/in/Dana-Ruiz/",
    "linkedin.com/in/dana-ruiz?trk=public_profile",
    "http://m.linkedin.com/in/dana-ruiz/",
    "HTTPS://FR.LINKEDIN.COM/IN/DANA-RUIZ",
    "  https://www.linkedin.com/in/dana-ruiz/#about ",
]
ACCOUNT = Account(account_id="quillcode.dev", company="Quillcode", domain="quillcode.dev")


@pytest.mark.parametrize("entered", SPELLINGS)
def test_a_profile_suppressed_under_one_spelling_is_found_under_every_other(
    tmp_path: Path, entered: str
) -> None:
    sup = SuppressionList(tmp_path / "s.sqlite")
    sup.add("linkedin", entered, "asked us to stop")
    assert [(k, v) for k, v, _ in sup.entries()] == [("linkedin", PROFILE)]
    for spelling in SPELLINGS:
        dana = Contact(name="Dana Ruiz", linkedin_url=spelling)
        assert "asked us to stop" in (sup.check(dana, ACCOUNT) or ""), spelling
    sup.close()


@pytest.mark.parametrize(
    ("kind", "value", "says"),
    [
        ("email", "not-an-email", "'not-an-email' is not an email address"),
        ("email", "dana@quillcode", "is not an email address"),
        ("domain", "quillcode", "'quillcode' is not a domain like 'example.com'"),
        ("domain", "dana@quillcode.dev", "is an email address, not a domain"),
        ("domain", "https://", "is not a domain"),
        ("linkedin", "https://example.com/in/dana", "is not a LinkedIn profile URL"),
        ("linkedin", "https://www.linkedin.com/company/quillcode", "not a LinkedIn profile URL"),
        ("linkedin", "dana-ruiz", "is not a LinkedIn profile URL like"),
    ],
)
def test_junk_is_refused_with_what_is_wrong(
    tmp_path: Path, kind: suppression.SuppressionKind, value: str, says: str
) -> None:
    sup = SuppressionList(tmp_path / "s.sqlite")
    with pytest.raises(ValueError, match=says):
        sup.add(kind, value, "x")
    assert sup.entries() == []
    sup.close()


@pytest.mark.parametrize(
    ("kind", "value", "stored"),
    [
        ("email", "  Dana@QuillCode.DEV ", "dana@quillcode.dev"),
        ("domain", "https://www.QuillCode.dev/pricing?plan=team", "quillcode.dev"),
        ("domain", "quillcode.dev:8443/about", "quillcode.dev"),
        ("domain", "WWW.quillcode.dev.", "quillcode.dev"),
        ("linkedin", "de.linkedin.com/in/Dana-Ruiz/", PROFILE),
        ("person_key", "https://de.linkedin.com/in/dana-ruiz/", PROFILE),
    ],
)
def test_each_identifier_is_stored_in_one_form(
    kind: suppression.SuppressionKind, value: str, stored: str
) -> None:
    assert suppression.normalise(kind, value) == stored


def _old_list(path: Path, rows: list[tuple[str, str]]) -> None:
    """A do-not-contact list as the earlier code wrote it, byte for byte in its schema."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE suppressions (kind TEXT NOT NULL, value TEXT NOT NULL,"
        " reason TEXT NOT NULL, added_at TEXT NOT NULL, PRIMARY KEY (kind, value));"
        "CREATE TABLE erasures (n INTEGER PRIMARY KEY AUTOINCREMENT,"
        " at TEXT NOT NULL, fingerprint TEXT NOT NULL, requested_by TEXT NOT NULL,"
        " erased TEXT NOT NULL);"
    )
    db.executemany(
        "INSERT INTO suppressions VALUES (?, ?, 'old entry', '2026-01-05T09:00:00+00:00')", rows
    )
    db.commit()
    db.close()


def test_entries_stored_by_earlier_versions_are_already_in_the_one_form(tmp_path: Path) -> None:
    """What the earlier normaliser stored for well-formed input (lower-cased, no scheme or
    `www.` on a domain, `https://www.linkedin.com/in/slug`): unchanged, so no migration."""
    old = [
        ("email", "dana@quillcode.dev"),
        ("domain", "competitor.example"),
        ("linkedin", "https://www.linkedin.com/in/omar-haddad"),
        ("person_key", "dana@quillcode.dev"),
        ("person_key", "https://www.linkedin.com/in/omar-haddad"),
    ]
    erased = hashlib.sha256(b"email:lee@lexora.law").hexdigest()  # an earlier erasure
    _old_list(tmp_path / "s.sqlite", [*old, ("erased", erased)])
    for kind, value in old:
        assert suppression.normalise(kind, value) == value
    sup = SuppressionList(tmp_path / "s.sqlite")
    assert sorted((k, v) for k, v, _ in sup.entries()) == sorted([*old, ("erased", erased)])
    assert sup.check_identifiers(email="Dana@QuillCode.dev")
    assert sup.check_identifiers(linkedin_url="https://de.linkedin.com/in/omar-haddad/")
    assert sup.check_identifiers(domain="https://www.competitor.example/")
    assert "(erased person)" in (sup.check_identifiers(email=" LEE@lexora.law") or "")
    sup.close()


def test_an_entry_stored_under_another_spelling_by_an_earlier_version_still_suppresses(
    tmp_path: Path,
) -> None:
    """`gtm suppress --linkedin de.linkedin.com/in/Jane/` used to store the country spelling:
    opening the list gives it the one form too, so the person stays suppressed."""
    _old_list(tmp_path / "s.sqlite", [("linkedin", "de.linkedin.com/in/jane-roe")])
    sup = SuppressionList(tmp_path / "s.sqlite")
    jane = Contact(name="Jane Roe", linkedin_url="https://www.linkedin.com/in/jane-roe")
    assert "old entry" in (sup.check(jane, ACCOUNT) or "")
    sup.close()


async def test_erasing_a_profile_finds_actions_logged_under_another_spelling(
    tmp_path: Path,
) -> None:
    li = LocalLinkedInOutbox(tmp_path / "li.sqlite", sender="me@vendor.example")
    await li.connect(PROFILE, "Hi Dana", key="k1")
    await li.visit("https://www.linkedin.com/in/omar-haddad", key="k2")
    assert await li.erase_person([], ["https://de.linkedin.com/in/Dana-Ruiz/"]) == 1
    assert [a.profile_url for a in li.actions()] == ["https://www.linkedin.com/in/omar-haddad"]
    li.close()
    mail = LocalEmailOutbox(tmp_path / "mail", sender="me@vendor.example")
    await mail.send(to="Dana@QuillCode.dev", to_name="Dana", subject="s", body="b", key="k3")
    assert await mail.erase_person([" dana@quillcode.DEV"], []) == 1
    assert mail.messages() == []


async def test_the_crm_knows_a_contact_under_any_profile_spelling(tmp_path: Path) -> None:
    assert {normalise_linkedin(s) for s in SPELLINGS} == {PROFILE}
    crm = LocalCRM(tmp_path / "crm.sqlite")
    company = await crm.upsert_company(ACCOUNT)
    await crm.upsert_contact(
        Contact(name="Dana Ruiz", linkedin_url="https://de.linkedin.com/in/dana-ruiz/"),
        company.id,
    )
    for spelling in SPELLINGS:
        found = await crm.find_contact(Contact(name="", linkedin_url=spelling))
        assert found is not None and found.linkedin_url == PROFILE, spelling
    crm.close()
