"""Account list validation: every rejection names file, row and field; good rows still load."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtm.app.accounts import COLUMNS, AccountListError, load_accounts
from gtm.domain.playbook import load_playbook

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "accounts.csv"
HEADER = "company,domain,contact_name,contact_title,linkedin_url,email,segment,signals"
GOOD = (
    "Quillcode,quillcode.dev,Dana Ruiz,VP Engineering,"
    "https://www.linkedin.com/in/dana-ruiz,dana@quillcode.dev,AI coding assistant,3 sign-ups"
)


def write(tmp_path: Path, text: str | bytes, name: str = "list.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


def errors(tmp_path: Path, *rows: str) -> list[str]:
    result = load_accounts(write(tmp_path, "\n".join([HEADER, GOOD, *rows]) + "\n"))
    assert [a.account_id for a in result.accounts][:1] == ["quillcode.dev"], "good rows load"
    return [str(e) for e in result.errors]


def test_example_loads_cleanly_with_every_tier_and_some_out_of_scope() -> None:
    result = load_accounts(EXAMPLE)
    assert result.errors == [] and result.warnings == []
    assert len(result.accounts) >= 20
    pb = load_playbook()
    tiers = [t.tier if (t := pb.tier_of(a)) else None for a in result.accounts]
    assert {1, 2, 3} <= set(tiers) and tiers.count(None) >= 3
    assert any(pb.competitor_of(a) for a in result.accounts)
    assert all(c.linkedin_url and c.email for a in result.accounts for c in a.contacts)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (
            "Acme,acme.ai,Jo Lee,CTO,https://www.linkedin.com/in/jo,not-an-email,x,y",
            "list.csv:3:email: 'not-an-email' is not a valid email address",
        ),
        (
            "Acme,acme.ai,Jo Lee,CTO,https://example.com/jo,jo@acme.ai,x,y",
            "list.csv:3:linkedin_url: 'https://example.com/jo' is not a profile URL",
        ),
        (
            "Acme,acme ai,Jo Lee,CTO,https://www.linkedin.com/in/jo,jo@acme.ai,x,y",
            "list.csv:3:domain: 'acme ai' is not a domain",
        ),
        (
            "Acme,acme.ai,,CTO,https://www.linkedin.com/in/jo,jo@acme.ai,x,y",
            "list.csv:3:contact_name: is empty",
        ),
        ("Acme,acme.ai,Jo Lee,CTO", "list.csv:3:(row): has 4 cells, the header has 8"),
        (GOOD, "list.csv:3:(row): duplicate row (same as row 2)"),
        (
            "Other,other.ai,Dana R,CEO,https://www.linkedin.com/in/x,dana@quillcode.dev,x,y",
            "list.csv:3:email: duplicate contact (first seen on row 2)",
        ),
        (
            "Acme,acme.ai,Jo Lee,CTO,,,x,y",
            "list.csv:3:linkedin_url: the contact has neither a LinkedIn URL nor an email",
        ),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path: Path, row: str, expected: str) -> None:
    found = errors(tmp_path, row)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_multiline_quoted_field_keeps_line_numbers_right(tmp_path: Path) -> None:
    text = "\n".join(
        [
            HEADER,
            'Acme,acme.ai,Jo Lee,CTO,https://www.linkedin.com/in/jo,jo@acme.ai,x,"two\nlines"',
            "Bad,bad domain,Al B,CTO,https://www.linkedin.com/in/al,al@bad.ai,x,y",
        ]
    )
    result = load_accounts(write(tmp_path, text))
    assert [str(e).split(": ")[0] for e in result.errors] == ["list.csv:4:domain"]
    assert result.accounts[0].signals == ("two\nlines",)


def test_rows_group_into_accounts_by_domain(tmp_path: Path) -> None:
    second = (
        GOOD.replace("Dana Ruiz", "Theo M")
        .replace("dana-ruiz", "theo")
        .replace("dana@", "theo@")
        .replace("3 sign-ups", "hiring")
    )
    result = load_accounts(write(tmp_path, "\n".join([HEADER, GOOD, second])))
    (acct,) = result.accounts
    assert [c.name for c in acct.contacts] == ["Dana Ruiz", "Theo M"]
    assert acct.signals == ("3 sign-ups", "hiring") and acct.rows == (2, 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty"),
        ("company,domain\nA,a.ai\n", "missing required column(s) contact_name"),
        (b"company,domain,contact_name,email\nCaf\xe9,cafe.fr,Jo,jo@cafe.fr\n", "not UTF-8"),
    ],
)
def test_file_level_problems(tmp_path: Path, content: str | bytes, message: str) -> None:
    with pytest.raises(AccountListError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_accounts(write(tmp_path, content))


def test_missing_file_and_bom(tmp_path: Path) -> None:
    with pytest.raises(AccountListError, match="no such file"):
        load_accounts(tmp_path / "nope.csv")
    bom = write(tmp_path, ("\ufeff" + HEADER + "\n" + GOOD + "\n").encode("utf-8"))
    assert len(load_accounts(bom).accounts) == 1


def test_header_only_and_unknown_columns(tmp_path: Path) -> None:
    assert load_accounts(write(tmp_path, HEADER + "\n")).accounts == []
    result = load_accounts(write(tmp_path, HEADER + ",shoe_size\n" + GOOD + ",42\n"))
    assert len(result.accounts) == 1 and "shoe_size" in result.warnings[0]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(st.text(max_size=30), min_size=1, max_size=10), max_size=6))
def test_arbitrary_cells_never_crash(tmp_path: Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["company", "domain", "contact_name", "email", "linkedin_url", "signals"])
    w.writerows(rows)
    try:
        result = load_accounts(write(tmp_path, buf.getvalue(), "fuzz.csv"))
    except AccountListError as exc:
        assert "fuzz.csv" in str(exc)
        return
    for e in result.errors:
        assert e.file == "fuzz.csv" and e.row >= 2
        assert e.field in COLUMNS or e.field == "(row)"


def test_an_unclosed_quote_is_named_at_its_row_and_the_rows_below_still_load(
    tmp_path: Path,
) -> None:
    rows = [
        HEADER,
        GOOD,
        'Lexora,lexora.law,Omar Haddad,"Head of Engineering,,omar@lexora.law,legal tech,x',
        "Docsy,docsy.io,Lee Park,CTO,,lee@docsy.io,documentation,y",
        "Kestrel,kestrel.ai,Ann Wu,CEO,,ann@kestrel.ai,legal tech,z",
    ]
    result = load_accounts(write(tmp_path, "\n".join(rows) + "\n"))
    assert [str(e) for e in result.errors] == [
        "list.csv:3:(row): a quote opened on this row is never closed (it runs on to line 5); "
        "close it or remove it"
    ]
    assert [a.account_id for a in result.accounts] == ["quillcode.dev", "docsy.io", "kestrel.ai"]


@pytest.mark.parametrize("field", ["contact_name", "contact_title", "company", "email"])
def test_a_line_break_in_a_one_line_field_is_rejected(tmp_path: Path, field: str) -> None:
    cells = dict(zip(HEADER.split(","), next(csv.reader([GOOD])), strict=True))
    cells["domain"] = "lexora.law"
    cells["email"] = "omar@lexora.law"
    cells["linkedin_url"] = ""
    cells[field] = cells[field][:3] + "\n" + cells[field][3:]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells.values())
    assert errors(tmp_path, buf.getvalue().rstrip("\n")) == [
        f"list.csv:3:{field}: contains a line break (only description and signals may)"
    ]


@pytest.mark.parametrize(
    "spelled",
    [
        "https://de.linkedin.com/in/Omar-Haddad/",
        "www.linkedin.com/in/omar-haddad",
        "linkedin.com/in/omar-haddad?trk=public_profile",
        "http://uk.linkedin.com/in/omar-haddad#about",
        "https://m.linkedin.com/in/omar-haddad",
    ],
)
def test_every_spelling_of_a_profile_url_loads_as_one_url(tmp_path: Path, spelled: str) -> None:
    row = f"Lexora,lexora.law,Omar Haddad,CTO,{spelled},,legal tech,x"
    result = load_accounts(write(tmp_path, "\n".join([HEADER, row]) + "\n"))
    assert result.errors == []
    (contact,) = result.accounts[0].contacts
    assert contact.linkedin_url == "https://www.linkedin.com/in/omar-haddad"


@pytest.mark.parametrize(
    "value",
    [
        "https://www.linkedin.com/company/lexora",
        "https://linkedin.com.evil.example/in/x",
        "x",
        "javascript:alert(1)",
        "http://[::1",
    ],
)
def test_what_is_not_a_profile_url_is_rejected(tmp_path: Path, value: str) -> None:
    row = f"Lexora,lexora.law,Omar Haddad,CTO,{value},,legal tech,x"
    assert errors(tmp_path, row) == [
        f"list.csv:3:linkedin_url: {value!r} is not a profile URL like "
        "'https://www.linkedin.com/in/name'"
    ]
