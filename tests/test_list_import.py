"""Lists as people have them: export aliases, the map file, `gtm import` and `gtm run --map`."""

from __future__ import annotations

import csv
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gtm.app.accounts import AccountListError, load_accounts
from gtm.app.list_columns import FORMATS, MapFileError, key, load_map, resolve
from gtm.cli import app

ROOT = Path(__file__).resolve().parents[1]
EXPORTS = Path(__file__).resolve().parent / "fixtures" / "exports"


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(
    ("fixture", "fmt", "accounts", "rejected"),
    [
        ("hubspot_contacts.csv", "hubspot", {"quillcode.dev", "lexora.law"}, ["4:email"]),
        ("apollo_people.csv", "apollo", {"forkwise.ai"}, ["4:email"]),
        ("sales_navigator_scraper.csv", "sales_navigator", {"glimmer.ai"}, ["3:email"]),
        ("clay_table.csv", "clay", {"mintwise.io"}, []),
        ("duxsoup_visits.csv", "duxsoup", {"pagewise.dev"}, ["3:companywebsite"]),
    ],
)
def test_each_export_is_recognised_without_a_map(
    fixture: str, fmt: str, accounts: set[str], rejected: list[str]
) -> None:
    result = load_accounts(EXPORTS / fixture)
    assert result.columns is not None and result.columns.formats == [fmt]
    assert {a.account_id for a in result.accounts} == accounts
    assert [f"{e.row}:{e.field}" for e in result.errors] == rejected
    for a in result.accounts:
        assert a.company and all(c.name and " " in c.name for c in a.contacts)


def test_first_and_last_name_join_and_urls_reduce_to_domains() -> None:
    result = load_accounts(EXPORTS / "apollo_people.csv")
    (forkwise,) = result.accounts
    assert [c.name for c in forkwise.contacts] == ["Priya Natarajan", "Theo Martin"]
    assert forkwise.domain == "forkwise.ai" and forkwise.segment == "computer software"
    assert forkwise.contacts[0].linkedin_url == "https://www.linkedin.com/in/priya-natarajan"
    hub = {a.domain: a for a in load_accounts(EXPORTS / "hubspot_contacts.csv").accounts}
    assert hub["quillcode.dev"].website == "https://quillcode.dev"  # a bare host gets https://
    assert hub["lexora.law"].owner == "owner@ourco.example"


def test_the_domain_comes_from_the_email_but_never_from_a_personal_provider(
    tmp_path: Path,
) -> None:
    p = write(
        tmp_path,
        "mail.csv",
        "Full Name,Company,Email\nAl Bo,Acme,al@acme.dev\nCy Do,Beta,cy@Gmail.com\n",
    )
    result = load_accounts(p)
    assert [a.domain for a in result.accounts] == ["acme.dev"]
    assert [str(e).split(": ")[0] for e in result.errors] == ["mail.csv:3:email"]
    assert "personal mail provider" in result.errors[0].reason


def test_an_ambiguous_header_is_reported_never_picked(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "two.csv",
        "First Name,Last Name,Company,Company Name,Email\nAl,Bo,Acme,Acme Inc,al@acme.dev\n",
    )
    with pytest.raises(AccountListError) as exc:
        load_accounts(p)
    assert "repeated column(s) 'company' in columns 3, 4" in str(exc.value)
    assert "3 'Company', 4 'Company Name'" in str(exc.value)
    # a map file settles it: the other column is ignored, and says why
    m = write(tmp_path, "m.yaml", 'company: "Company Name"\n')
    result = load_accounts(p, load_map(m))
    assert [a.company for a in result.accounts] == ["Acme Inc"]
    assert result.columns is not None
    assert (2, "Company", "the map file takes company from another column") in (
        result.columns.ignored
    )


def test_matching_ignores_case_and_punctuation() -> None:
    cm = resolve(["PERSON-LINKEDIN-URL", "first_name", "LastName", "company name", "E-mail"])
    assert {u.header: u.field for u in cm.used} == {
        "PERSON-LINKEDIN-URL": "linkedin_url",
        "first_name": "first_name",
        "LastName": "last_name",
        "company name": "company",
        "E-mail": "email",
    }
    assert cm.missing == []


def test_alias_tables_never_send_one_header_to_two_fields() -> None:
    seen: dict[str, str] = {}
    for table in FORMATS.values():
        for header, target in table.items():
            assert seen.setdefault(key(header), target) == target, header


def test_marked_columns_become_facts_with_their_source(tmp_path: Path) -> None:
    m = write(tmp_path, "clay.toml", 'facts = ["Funding"]\n')
    result = load_accounts(EXPORTS / "clay_table.csv", load_map(m))
    (acct,) = result.accounts
    assert [(f.text, f.source) for f in acct.facts] == [
        ("Mintwise: Funding: Series B (2026-08)", "clay_table.csv:2:Funding")
    ], "the same fact on row 3 is not repeated"
    assert result.warnings == []  # Funding is used now, not ignored


def test_facts_reach_research(tmp_path: Path) -> None:
    from agents.research import list_facts

    m = write(tmp_path, "clay.yaml", "facts: [Funding]\n")
    (acct,) = load_accounts(EXPORTS / "clay_table.csv", load_map(m)).accounts
    found = list_facts(acct, acct.contacts[0])
    assert (
        "company",
        "Mintwise: Funding: Series B (2026-08)",
        "clay_table.csv:2:Funding",
        None,
    ) in found


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('compnay: "Org"\n', "'compnay' is not one of our fields"),
        ("facts: Funding\n", "facts: must be a list of column names"),
        ("email: 3\n", "email: must be the name of one of the list's columns"),
        ("- a\n", "expected `our_field"),
        ("a: [\n", "cannot parse the map file"),
    ],
)
def test_a_bad_map_file_names_the_bad_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MapFileError, match=message.replace("[", r"\[")) as exc:
        load_map(write(tmp_path, "bad.yaml", text))
    assert str(exc.value).startswith(str(tmp_path / "bad.yaml"))


def test_a_map_file_reads_an_unknown_layout(tmp_path: Path) -> None:
    m = write(
        tmp_path,
        "map.yaml",
        'contact_name: Person\ncompany: "Organisation"\nemail: Mail\nsegment: "Not There"\n',
    )
    result = load_accounts(EXPORTS / "unknown_layout.csv", load_map(m))
    assert [(a.domain, a.contacts[0].name) for a in result.accounts] == [("kestrel.ai", "Ann Wu")]
    assert result.warnings == [
        "unknown_layout.csv:1: the map file names column(s) the list does not have: "
        "segment: 'Not There'"
    ]


runner = CliRunner()


def test_import_dry_run_previews_and_changes_nothing(tmp_path: Path) -> None:
    before = sorted(p.name for p in EXPORTS.iterdir())
    res = runner.invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "d"),
            "import",
            str(EXPORTS / "apollo_people.csv"),
            "--dry-run",
        ],
        terminal_width=200,
    )
    assert res.exit_code == 3, res.output  # one row rejected: the status says so
    out = res.stdout
    assert "looks like: apollo" in out
    assert "Person Linkedin Url" in out and "linkedin_url" in out
    assert "Company Linkedin Url" in out and "not a column we use" in out
    assert "Priya" in out and "Natarajan" in out  # the first rows, as read
    assert "2 good row(s) in 1 account(s), 1 rejected" in out
    assert "email: 'not-an-email' is not a valid email address" in out
    assert "dry run: nothing written" in out
    assert sorted(p.name for p in EXPORTS.iterdir()) == before
    assert not (tmp_path / "d").exists()


def test_import_of_an_unknown_layout_exits_2_naming_the_missing_columns(tmp_path: Path) -> None:
    res = runner.invoke(app, ["import", str(EXPORTS / "unknown_layout.csv")], terminal_width=200)
    assert res.exit_code == 2
    assert "Organisation" in res.stdout and "not a column we use" in res.stdout  # the preview
    assert "missing required column(s) company, domain (or a website or email" in res.stderr
    assert "contact_name (or first_name and last_name)" in res.stderr and "--map" in res.stderr


def test_import_with_a_bad_map_file_exits_2(tmp_path: Path) -> None:
    m = write(tmp_path, "m.yaml", "nme: Person\n")
    res = runner.invoke(app, ["import", str(EXPORTS / "unknown_layout.csv"), "--map", str(m)])
    assert res.exit_code == 2 and "'nme' is not one of our fields" in res.stderr


def test_run_takes_the_same_map_file(tmp_path: Path) -> None:
    """`gtm run --map` fails on the map before touching anything, with the same message."""
    m = write(tmp_path, "m.yaml", "nme: Person\n")
    res = runner.invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "d"),
            "run",
            str(EXPORTS / "unknown_layout.csv"),
            "--map",
            str(m),
        ],
    )
    assert res.exit_code == 2 and "'nme' is not one of our fields" in res.stderr
    assert not (tmp_path / "d").exists()
    res = runner.invoke(
        app, ["--data-dir", str(tmp_path / "d"), "run", str(EXPORTS / "unknown_layout.csv")]
    )
    assert res.exit_code == 2 and "missing required column(s) company" in res.stderr


def _old_loader(monkeypatch: pytest.MonkeyPatch) -> object:
    """The loader as committed before this change, to prove every existing list reads the same."""
    src = subprocess.run(
        ["git", "show", "HEAD:gtm/app/accounts.py"], cwd=ROOT, capture_output=True, text=True
    )
    if src.returncode != 0:
        pytest.skip("no git history to compare with")
    spec = importlib.util.spec_from_loader("old_accounts", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "old_accounts", module)  # its dataclasses look it up
    exec(compile(src.stdout, "old_accounts.py", "exec"), module.__dict__)
    return module


def test_every_existing_list_loads_exactly_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    old = _old_loader(monkeypatch)
    lists = [
        ROOT / "examples" / "accounts.csv",
        *sorted((ROOT / "tests" / "fixtures").glob("*.csv")),
    ]
    for path in lists:
        then = old.load_accounts(path)  # type: ignore[attr-defined]
        now = load_accounts(path)
        assert [a.model_dump(exclude={"facts"}) for a in now.accounts] == [
            a.model_dump(exclude={"facts"}) for a in then.accounts
        ], path
        assert [str(e) for e in now.errors] == [str(e) for e in then.errors], path
        assert now.warnings == then.warnings, path


def test_a_bad_cell_in_an_aliased_column_names_that_column(tmp_path: Path) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["First Name", "Last Name", "Company Name", "Website", "Person Linkedin Url"])
    w.writerow(["Al", "Bo", "Acme", "https://acme.dev", "https://example.com/al"])
    w.writerow(["Cy", "Do", "Beta", "ftp://beta.dev", "https://www.linkedin.com/in/cy"])
    w.writerow(["", "", "Gamma", "https://gamma.dev", "https://www.linkedin.com/in/g"])
    result = load_accounts(write(tmp_path, "a.csv", buf.getvalue()))
    assert [(e.row, e.field) for e in result.errors] == [
        (2, "person_linkedin_url"),
        (3, "website"),
        (4, "first_name"),
    ]
