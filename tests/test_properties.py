"""Bad input, proven: hostile account lists, playbooks and config files never crash a loader.

Every property has the same shape: the loader returns, or raises its own error type (never
anything else), and every rejection names the file (or environment variable), and the row and
field it is about, so a person can find and fix it.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from hypothesis.provisional import domains

import gtm.app.accounts
from gtm.app.accounts import COLUMNS, REQUIRED, AccountListError, load_accounts
from gtm.app.settings import Settings, SettingsError, load_settings
from gtm.domain.playbook import Playbook, PlaybookError, load_playbook
from tests.support.cli import run_gtm


def fast(examples: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def lines_before(text: str) -> int:
    """How many lines `csv` counts in `text` (it splits on \\n, \\r and \\r\\n, like editors)."""
    return len(io.StringIO(text, newline="").readlines())


# --- account lists ----------------------------------------------------------------------------

OPTIONAL = [c for c in COLUMNS if c not in REQUIRED]
GENERAL_CELLS = [
    "",
    " ",
    '"',
    '""',
    ",",
    "a,b",
    "line\nbreak",
    "windows\r\nbreak",
    "lone\rcr",
    "\x00",
    "nul\x00byte",
    "\ufeff",
    "\u202eevil",
    "\t",
    "x" * 5000,
    "é",
    "名前",
    "😀",
    "=cmd|' /C calc'!A0",
    "NaN",
    "null",
]
URLS = [
    "http://[::1",
    "http://[broken",
    "https://[v1.fe80::a+en1]",
    "https://",
    "://",
    "http://",
    "javascript:alert(1)",
    "ftp://acme.dev",
    "https://acme.dev:notaport",
    "https://www.linkedin.com/in/",
    "https://linkedin.com/company/x",
    "linkedin.com/in/jo",
    "https://www.linkedin.com/in/jo?trk=1#x",
    "https://www.linkedin.com/in/[::1",
]
AIMED: dict[str, list[str]] = {
    "email": [
        "not-an-email",
        "a@",
        "@b.dev",
        "a@b",
        "a@@b.dev",
        "jo@acme..dev",
        "jo@[127.0.0.1]",
        '"quoted local"@acme.dev',
        "jo@xn--80ak6aa92e.com",
        "jo@bücher.de",
        "x" * 300 + "@acme.dev",
    ],
    "domain": [
        *URLS,
        "acme",
        "acme ai",
        "-acme.dev",
        "acme.dev:99999",
        "www.",
        "a" * 64 + ".dev",
        ("a" * 60 + ".") * 5 + "dev",
    ],
    "website": URLS,
    "linkedin_url": URLS,
    "open_source_user": ["maybe", "YES", " no ", "2", "ja"],
}
cells = st.one_of(
    st.sampled_from(GENERAL_CELLS + [v for vs in AIMED.values() for v in vs]),
    st.text(max_size=30),
    st.emails(),
    domains(),
    st.from_regex(r"https?://(www\.)?linkedin\.com/in/[^?#]{0,12}", fullmatch=True),
)


def cell_for(col: str) -> st.SearchStrategy[str]:
    """Values aimed at the column's own checks, or anything at all."""
    return st.one_of(st.sampled_from(GENERAL_CELLS + AIMED.get(col, [])), cells)


def cell_values(cols: list[str], prefix: str, i: int) -> list[str]:
    """A valid row for these (normalized) columns; `prefix` keeps good and bad rows apart."""
    values = {
        "company": f"{prefix.title()} Co {i}",
        "domain": f"{prefix}{i}.dev",
        "contact_name": f"{prefix.title()} Person {i}",
        "website": f"https://{prefix}{i}.dev/about",
        "segment": "legal tech",
        "description": 'Contract review, with a comma, "quotes" and\ntwo lines',
        "contact_title": "CTO",
        "linkedin_url": f"https://www.linkedin.com/in/{prefix}-{i}",
        "email": f"person{i}@{prefix}{i}.dev",
        "tech_stack": "Pinecone; LangChain",
        "signals": "hiring",
        "open_source_user": "yes",
        "event": "",
        "owner": "",
    }
    return [values.get(c, "extra") for c in cols]


def spellings(col: str) -> list[str]:
    return [col, col.upper(), f" {col} ", col.replace("_", " ").title()]


@st.composite
def valid_headers(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """(normalized columns, as spelled in the file): the required ones, a way to reach the
    contact, any optional ones, maybe unknown or unnamed ones, in any order and spelling."""
    reach = draw(st.sampled_from([["email"], ["linkedin_url"], ["email", "linkedin_url"]]))
    optional = draw(st.lists(st.sampled_from(OPTIONAL), unique=True))
    unknown = draw(st.lists(st.sampled_from(["notes", "shoe_size", ""]), unique=True, max_size=2))
    cols = draw(st.permutations(list(dict.fromkeys([*REQUIRED, *reach, *optional])) + unknown))
    return list(cols), [draw(st.sampled_from(spellings(c))) if c else c for c in cols]


@st.composite
def bad_rows(draw: st.DrawFn, cols: list[str], j: int) -> list[str]:
    if draw(st.booleans()):  # anything at all, any number of cells
        return draw(st.lists(cells, max_size=len(cols) + 2))
    row = cell_values(cols, "badrow", j)  # a valid row with one to three cells spoiled
    for k in draw(st.lists(st.integers(0, len(cols) - 1), min_size=1, max_size=3, unique=True)):
        row[k] = draw(cell_for(cols[k]))
    return row


@st.composite
def account_files(draw: st.DrawFn) -> tuple[str, list[str], list[tuple[str, int, list[str]]]]:
    cols, spelled = draw(valid_headers())
    n_bad = draw(st.integers(0, 6))
    records = [("good", i, cell_values(cols, "goodrow", i)) for i in range(draw(st.integers(1, 3)))]
    records += [("bad", j, draw(bad_rows(cols, j))) for j in range(n_bad)]
    records += [("blank", k, []) for k in range(draw(st.integers(0, 2)))]
    records = list(draw(st.permutations(records)))
    # csv.writer only quotes a lone \r when it is part of the line terminator.
    terminator, quote_all = draw(st.sampled_from([("\r\n", False), ("\r\n", True), ("\n", True)]))
    buf = io.StringIO()
    writer = (
        csv.writer(buf, lineterminator=terminator, quoting=csv.QUOTE_ALL)
        if quote_all
        else csv.writer(buf, lineterminator=terminator)
    )
    writer.writerow(spelled)
    starts = []
    for _, _, cells_written in records:
        starts.append(lines_before(buf.getvalue()) + 1)
        writer.writerow(cells_written)
    bom = "\ufeff" if draw(st.booleans()) else ""
    placed = [(kind, line, row) for (kind, _, row), line in zip(records, starts, strict=True)]
    return bom + buf.getvalue(), cols, placed


@fast(200)
@given(account_files())
def test_hostile_rows_are_reported_by_file_row_and_field_and_good_rows_still_load(
    tmp_path: Path, generated: tuple[str, list[str], list[tuple[str, int, list[str]]]]
) -> None:
    text, cols, records = generated
    path = tmp_path / "hostile list.csv"
    path.write_text(text, encoding="utf-8", newline="")

    result = load_accounts(path)  # the header is valid: no file-level error is acceptable

    loaded = {c.row: (a, c) for a in result.accounts for c in a.contacts}
    for e in result.errors:
        assert e.file == path.name and str(e).startswith(f"{path.name}:{e.row}:{e.field}: ")
        assert e.field in cols or e.field == "(row)", e
        assert e.reason.strip(), e
    for w in result.warnings:
        assert w.startswith(f"{path.name}:"), w
    rejected = [e.row for e in result.errors]
    assert len(rejected) == len(set(rejected)), "one error per row"
    for kind, line, row in records:
        if kind == "good":
            assert line in loaded, (line, [str(e) for e in result.errors])
            account, contact = loaded[line]
            assert account.domain == row[cols.index("domain")]
            assert contact.name == row[cols.index("contact_name")]
        elif not any(c.strip() for c in row):
            assert line not in loaded and line not in rejected
        else:  # every non-blank row either loads or is rejected, exactly once, on its own line
            assert (line in loaded) != (line in rejected), (line, row)
    assert set(loaded) | set(rejected) <= {line for _, line, _ in records}


header_cells = st.one_of(
    st.sampled_from([*COLUMNS, "Contact Name", " EMAIL ", "", "notes", "\ufeffcompany"]),
    st.text(max_size=12),
)
hostile_headers = st.one_of(
    # valid, with duplicated columns
    st.builds(
        lambda cols, dup: [*cols, *dup],
        valid_headers().map(lambda h: h[1]),
        st.lists(st.sampled_from([*COLUMNS, "notes", ""]), min_size=1, max_size=2),
    ),
    # required columns missing, or no way to reach the contact
    st.lists(st.sampled_from(COLUMNS), max_size=8),
    st.lists(header_cells, max_size=8),
)
hostile_bodies = st.one_of(
    st.lists(st.lists(cells, max_size=16).map(lambda r: ",".join(r)), max_size=6).map("\n".join),
    st.text(max_size=300),
    st.sampled_from(
        ['"unterminated,quote\nA,a.dev,Al,al@a.dev\n', "\x00\x00\n", "\r\r\r", "\n" * 5]
    ),
)


@st.composite
def hostile_files(draw: st.DrawFn) -> bytes:
    header = ",".join(draw(hostile_headers))
    text = header + draw(st.sampled_from(["\n", "\r\n", "\r", ""])) + draw(hostile_bodies)
    encoding = draw(
        st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1", "cp1252"])
    )
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):
        return data
    return draw(st.one_of(st.binary(max_size=200), st.just(data[: len(data) // 2])))


@fast(200)
@given(hostile_files())
def test_any_bytes_give_a_result_or_an_account_list_error_naming_the_file(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "list.csv"
    path.write_bytes(data)
    try:
        result = load_accounts(path)
    except AccountListError as exc:
        assert str(exc).startswith(f"{path}:"), exc
        return
    text = data.decode("utf-8-sig")
    header = next(csv.reader(io.StringIO(text, newline="")))
    cols = [h.strip().lower().replace(" ", "_") for h in header]
    last = lines_before(text) + 1
    for e in result.errors:
        assert e.file == "list.csv" and 2 <= e.row <= last, e
        assert e.field in cols or e.field == "(row)", (e, cols)
        assert str(e).startswith(f"list.csv:{e.row}:{e.field}: ")
    assert all(w.startswith("list.csv:") for w in result.warnings)


def test_duplicate_columns_are_a_file_level_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text("company,domain,contact_name,email,Email\nA,a.dev,Al,al@a.dev,x@a.dev\n")
    with pytest.raises(
        AccountListError,
        match=r"dup\.csv:1: repeated column\(s\) 'email' in columns 4, 5; keep one",
    ):
        load_accounts(path)
    # unknown or unnamed columns may repeat: they are ignored anyway
    path.write_text(
        "company,domain,contact_name,email,comment,comment,,\nA,a.dev,Al,al@a.dev,1,2,,\n"
    )
    assert len(load_accounts(path).accounts) == 1


def test_oversized_cell_is_one_row_error_and_the_rows_around_it_load(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    big = "x" * 200_000
    path.write_text(
        f'company,domain,contact_name,email\nA,a.dev,Al,al@a.dev\nB,b.dev,"{big}",b@b.dev\n'
        "C,c.dev,Cy,c@c.dev\n"
    )
    result = load_accounts(path)
    assert [a.domain for a in result.accounts] == ["a.dev", "c.dev"]
    assert [(e.row, e.field) for e in result.errors] == [(3, "(row)")]


@pytest.mark.parametrize(
    ("col", "value"), [("domain", "http://[::1"), ("website", "http://[broken")]
)
def test_unparseable_url_is_a_row_error_not_a_crash(tmp_path: Path, col: str, value: str) -> None:
    path = tmp_path / "urls.csv"
    bad = {"company": "B", "domain": "b.dev", "contact_name": "Bo", "email": "bo@b.dev"}
    bad[col] = value
    path.write_text(
        "company,domain,contact_name,email,website\n"
        "A,a.dev,Al,al@a.dev,https://a.dev\n"
        f"{bad['company']},{bad['domain']},Bo,bo@b.dev,{bad.get('website', '')}\n"
    )
    result = load_accounts(path)
    assert [a.domain for a in result.accounts] == ["a.dev"]
    assert [(e.row, e.field) for e in result.errors] == [(3, col)]


def test_windows_line_breaks_inside_a_quoted_cell_are_not_control_characters(
    tmp_path: Path,
) -> None:
    path = tmp_path / "win.csv"
    path.write_bytes(
        b'company,domain,contact_name,email,description\r\nA,a.dev,Al,al@a.dev,"x\r\ny"\r\n'
    )
    result = load_accounts(path)
    assert result.errors == [] and result.accounts[0].description == "x\ny"


def test_a_contact_without_email_names_a_column_the_file_has(tmp_path: Path) -> None:
    path = tmp_path / "mail.csv"
    path.write_text("company,domain,contact_name,email\nA,a.dev,Al,\n")
    assert [str(e) for e in load_accounts(path).errors] == [
        "mail.csv:2:email: the contact has neither a LinkedIn URL nor an email"
    ]


def test_more_rows_than_allowed_is_a_file_level_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gtm.app.accounts, "MAX_ROWS", 50)
    path = tmp_path / "huge.csv"
    rows = "".join(f"A,a.dev,Al{i},\n" for i in range(51))
    path.write_text("company,domain,contact_name,email\n" + rows)
    with pytest.raises(AccountListError, match=re.escape(f"{path}: more than 50 rows")):
        load_accounts(path)


# --- playbook ---------------------------------------------------------------------------------

DEFAULT_YAML = Path(__file__).resolve().parents[1] / "gtm" / "domain" / "playbook.default.yaml"
DEFAULT = yaml.safe_load(DEFAULT_YAML.read_text(encoding="utf-8"))
Key = str | int
Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
Where = tuple[Key, ...]

HOSTILE_STRINGS = [
    "",
    " ",
    "(unclosed",
    "[z-a]",
    "*",
    "a**",
    "\\",
    "(?P<x>a)(?P<x>b)",
    "a{4294967296}",
    "(" * 1200 + ")" * 1200,
    "America",
    "Etc",
    "../../etc/passwd",
    "/etc/passwd",
    "x" * 300,
    "Mars/Olympus_Mons",
    "UTC",
    "Europe/Berlin",
    "25:00",
    "09:00",
    "17:30",
    "00:00",
    "23:59:59",
    "9am",
    "mon",
    "sunday",
    "always",
    "batch",
    "sometimes",
    "live",
    "all",
    "none",
    "opt_out",
    "record",
    "1e309",
    "-1",
    "0.5",
    "yes",
    "null",
    "\x00",
    "😀",
]
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([-1, 0, 1, 2**31, 2**63, -(2**70), 10**400]),
    st.integers(),
    st.floats(-2, 2),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(HOSTILE_STRINGS),
)
keys: st.SearchStrategy[Key] = st.one_of(
    st.sampled_from(["tier", "name", "keywords", "extra", "source", "timezone"]),
    st.text(max_size=8),
    st.integers(-2, 2),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)


def paths(node: Any, prefix: Where = ()) -> list[Where]:
    """Every path under `node`, containers and leaves, parents before children."""
    out: list[Where] = []
    items: list[tuple[Key, Any]] = []
    if isinstance(node, dict):
        items = list(node.items())
    elif isinstance(node, list):
        items = list(enumerate(node))
    for k, v in items:
        out.append((*prefix, k))
        out.extend(paths(v, (*prefix, k)))
    return out


def get(node: Any, where: Where) -> Any:
    for k in where:
        node = node[k]
    return node


def dotted(where: Where) -> str:
    """A path as error messages show it: names bare, odd keys ('', 'a b', 'x: y') quoted."""
    return ".".join(
        str(k)
        if isinstance(k, int) or (re.fullmatch(r"[^\s:'\"]+", k) and k.isprintable())
        else repr(k)
        for k in where
    )


def shape(where: Where) -> Where:
    """The schema path: list positions folded, so `tiers.*.segments.*.keywords.*` is one field."""
    return tuple("*" if isinstance(k, int) else k for k in where)


def like(current: Any) -> st.SearchStrategy[Any]:
    """Values aimed at the field's own type and limits, or anything at all."""
    aimed: st.SearchStrategy[Any]
    if isinstance(current, bool):
        aimed = st.sampled_from([None, "yes", 1, 0, []])
    elif isinstance(current, int | float):
        aimed = st.one_of(
            st.integers(-3, 3),
            st.floats(-1, 2),
            st.sampled_from([math.nan, math.inf, -math.inf, 2**63, 10**400, "5", True]),
        )
    elif isinstance(current, str):
        aimed = st.sampled_from(HOSTILE_STRINGS)
    elif isinstance(current, list):
        aimed = st.one_of(st.just([]), st.lists(st.sampled_from(HOSTILE_STRINGS), max_size=3))
    else:
        aimed = st.one_of(st.just({}), st.dictionaries(keys, leaves, max_size=2))
    return st.one_of(aimed, values)


@st.composite
def mutated_playbooks(draw: st.DrawFn) -> tuple[dict[str, Any], list[Where]]:
    """The shipped playbook with one to three random edits, and the path each edit touched."""
    data = copy.deepcopy(DEFAULT)
    touched: list[Where] = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "set", "set", "delete", "add"]))
        if op == "add":
            containers = [()] + [p for p in paths(data) if isinstance(get(data, p), dict | list)]
            where = draw(st.sampled_from(containers))
            node = get(data, where)
            if isinstance(node, list):
                node.append(draw(values))
                touched.append((*where, len(node) - 1))
            else:
                key = draw(keys)
                while key in node:
                    key = f"{key}_"
                node[key] = draw(values)
                touched.append((*where, key))
            continue
        by_shape: dict[Where, list[Where]] = {}
        for p in paths(data):
            by_shape.setdefault(shape(p), []).append(p)
        where = draw(st.sampled_from(by_shape[draw(st.sampled_from(sorted(by_shape, key=str)))]))
        parent = get(data, where[:-1])
        if op == "set":
            parent[where[-1]] = draw(like(parent[where[-1]]))
            touched.append(where)
        elif isinstance(parent, dict):
            del parent[where[-1]]
            touched.append(where)
        else:  # removing a list item shifts the ones after it: the list is what changed
            del parent[where[-1]]
            touched.append(where[:-1])
    return data, touched


def explains(line: str, where: str, touched: list[Where]) -> bool:
    """The error line is about a touched path, one of its ancestors, or something inside it."""
    for t in touched:
        if any(line.startswith(f"  {where}: {dotted(t[:n])}: ") for n in range(1, len(t) + 1)):
            return True
        if line.startswith(f"  {where}: {dotted(t)}."):
            return True
    return False


def check_edited_playbook(path: Path, data: dict[str, Any], touched: list[Where]) -> None:
    path.write_text(yaml.dump(data, Dumper=Dumper, allow_unicode=True), encoding="utf-8")
    try:
        pb = load_playbook(path)
    except PlaybookError as exc:
        first, *lines = str(exc).splitlines()
        assert first.startswith(f"{path}: "), first
        assert lines, str(exc)
        for line in lines:
            assert explains(line, str(path), touched), (line, [dotted(t) for t in touched])
        return
    assert isinstance(pb, Playbook) and pb.source == str(path)
    # what loads is usable: every pattern compiles, the time zone resolves
    for patterns in ("banned", "pitch", "urgency", "role", "injection"):
        getattr(pb.guardrails, f"{patterns}_patterns")
    assert pb.pacing.zone is not None


@fast(200)
@given(mutated_playbooks())
def test_edited_playbook_loads_or_the_error_names_file_and_edited_field(
    tmp_path: Path, generated: tuple[dict[str, Any], list[Where]]
) -> None:
    check_edited_playbook(tmp_path / "team playbook.yaml", *generated)


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("pacing", "timezone"), "America"),  # a directory in the tz database: IsADirectoryError
        (("pacing", "timezone"), "x" * 300),  # OSError: file name too long
        (("guardrails", "banned_phrases", 0), "a{4294967296}"),  # OverflowError in re
        (("guardrails", "urgency_phrases", 0), "(" * 1200 + ")" * 1200),  # RecursionError in re
        (("guardrails", "min_asks"), 3),  # above max_asks: no draft could ever pass
        (("pacing", "start"), 0),  # a time zone-aware 00:00 compared with a naive end: TypeError
        (("pacing", "end"), 1050),  # what YAML makes of an unquoted 17:30
        (("pacing", "end"), "17:30+02:00"),
        (("evals", "thresholds", ""), "x"),  # an empty key is shown, quoted
        (("evals", "thresholds", "a: b"), "x"),
        (("",), None),  # an empty top-level key
    ],
)
def test_edits_that_used_to_crash_or_mislead(tmp_path: Path, where: Where, value: object) -> None:
    data = copy.deepcopy(DEFAULT)
    get(data, where[:-1])[where[-1]] = value
    path = tmp_path / "team.yaml"
    check_edited_playbook(path, data, [where])  # any error names this field or an ancestor
    with pytest.raises(PlaybookError):
        load_playbook(path)


HOSTILE_YAML = [
    "tiers: [",
    "- just\n- a list",
    "just a string",
    "42",
    "",
    "~",
    "a: b\n\tc: d",
    "a: &x [*x]",
    "name: *undefined",
    "!!python/object/apply:os.system ['true']",
    "? [a, b]\n: c",
    "a: " + "[" * 1100 + "]" * 1100,
    "a: " + "{b: " * 1100 + "1" + "}" * 1100,
    "\x00",
    "%YAML 9.9\n---\na: 1",
    "---\na: 1\n---\nb: 2",
    "<<: 1",
    "tiers: !!binary aGVsbG8=",
    "caps: {emails_per_day: .nan}",
]


@fast(150)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda t: t.encode("utf-8")),
        st.sampled_from(HOSTILE_YAML).map(lambda t: t.encode("utf-8")),
        st.sampled_from(HOSTILE_YAML).map(lambda t: t.encode("utf-16")),
    )
)
def test_any_bytes_as_a_playbook_raise_a_playbook_error_naming_the_file(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "junk.yaml"
    path.write_bytes(data)
    with pytest.raises(PlaybookError) as exc:
        load_playbook(path)
    first, *lines = str(exc.value).splitlines()
    assert first.startswith(f"{path}: ")
    assert all(line.startswith(f"  {path}: ") for line in lines), str(exc.value)


def test_playbook_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(
        PlaybookError, match="^" + re.escape(f"{tmp_path}: cannot read the playbook")
    ):
        load_playbook(tmp_path)


# --- config file and environment --------------------------------------------------------------

Oracle = tuple[Any, bool | None]  # a value, and whether it is valid (None: not predicted)


def toml_key(k: str) -> str:
    if k and all(c.isascii() and (c.isalnum() or c in "_-") for c in k):
        return k
    return toml_str(k)


def shown_key(k: str) -> str:
    """A config key as errors show it: bare keys as they are, others ('', 'a b') quoted."""
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else repr(k)


def toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return (
            "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
        )
    if isinstance(v, str):
        return toml_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return str(v.isoformat())  # dates and times


toml_leaves = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(),
)
toml_values = st.recursive(
    toml_leaves,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), inner, max_size=3)
    ),
    max_leaves=5,
)
SECRET = "topsecret-"


def oracle(
    valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]
) -> st.SearchStrategy[Oracle]:
    return st.one_of(
        valid.map(lambda v: (v, True)),
        invalid.map(lambda v: (v, False)),
        toml_values.map(lambda v: (v, None)),
    )


no_nul_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=20,
)
not_a_number = st.sampled_from(["abc", "", "25x", "five"])
FILE_FIELDS: dict[str, st.SearchStrategy[Oracle]] = {
    "smtp_port": oracle(
        st.integers(1, 65535),
        st.integers(max_value=0)
        | st.integers(65536, 2**63 - 1)
        | not_a_number
        | st.floats().filter(lambda f: not f.is_integer())
        | st.lists(st.integers(), max_size=2),
    ),
    "model_temperature": oracle(
        st.floats(0, 2) | st.integers(0, 2),
        st.floats(min_value=2, exclude_min=True)
        | st.floats(max_value=-1e-9)
        | st.just(math.nan)
        | not_a_number,
    ),
    "http_timeout_s": oracle(
        st.floats(0.001, 1e6),
        st.floats(max_value=0) | st.sampled_from([math.nan, math.inf]) | not_a_number,
    ),
    "data_dir": oracle(
        no_nul_text,
        st.integers() | st.lists(st.text(), max_size=2) | no_nul_text.map(lambda t: t + "\x00"),
    ),
    "playbook": oracle(no_nul_text, st.integers() | st.dictionaries(st.just("a"), st.integers())),
    "crm": oracle(
        st.sampled_from(["local", "hubspot", "attio"]),
        st.text(max_size=10).filter(lambda t: t not in ("local", "hubspot", "attio"))
        | st.integers(),
    ),
    "email": oracle(st.sampled_from(["local", "smtp"]), st.sampled_from(["SMTP", "gmail", ""])),
    "email_from": oracle(st.text(max_size=20), st.integers() | st.lists(st.text(), max_size=2)),
    "smtp_starttls": oracle(st.booleans(), st.lists(st.booleans(), max_size=2) | st.just("maybe")),
    "hubspot_token": oracle(
        st.text(max_size=20),
        st.integers(1, 10**6).map(lambda n: 9_000_000_000 + n)
        | st.just([f"{SECRET}1", f"{SECRET}2"])
        | st.just({"token": f"{SECRET}3"}),
    ),
    "model_seed": oracle(st.integers(-(2**63), 2**63 - 1), not_a_number | st.just(1.5)),
}
ENV_FIELDS: dict[str, tuple[list[str], list[str]]] = {
    "smtp_port": (["25", "587", "65535"], ["", "abc", "0", "-1", "70000", "2.5"]),
    "model_temperature": (["0", "0.5", "2"], ["3", "-0.1", "nan", "inf", "warm", ""]),
    "http_timeout_s": (["1", "0.5"], ["0", "inf", "nan", "soon"]),
    "crm": (["local", "attio"], ["nope", "LOCAL", ""]),
    "data_dir": (["/tmp/gtm-data", "rel/dir"], []),
    "hubspot_token": (["pat-na1-123"], []),
}
UNKNOWN_KEYS = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True),
    st.sampled_from(["model_config", "GTM_CONFIG", "__class__", "__init__", "smtp port", ""]),
    st.text(max_size=8),
).filter(lambda k: k.lower() not in Settings.model_fields and k != "some_table")


@st.composite
def configs(
    draw: st.DrawFn,
) -> tuple[str, dict[str, Oracle], dict[str, tuple[str, str, bool]]]:
    """(TOML text, {key: (value, valid?)} in the file, {field: (variable, value, valid?)})."""
    chosen = draw(st.lists(st.sampled_from(sorted(FILE_FIELDS)), unique=True, max_size=6))
    in_file = {f: draw(FILE_FIELDS[f]) for f in chosen}
    lines = [
        f"{toml_key(draw(st.sampled_from([f, f.upper()])))} = {toml_value(v)}"
        for f, (v, _) in in_file.items()
    ]
    unknown = draw(st.dictionaries(UNKNOWN_KEYS, toml_values, max_size=3))
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in unknown.items()]
    lines = list(draw(st.permutations(lines)))
    if draw(st.booleans()):
        lines.append("[some_table]\nsmtp_port = 'not read: settings are top-level keys'")
        unknown["some_table"] = {}
    # a key that sets nothing is an error: a typo in email_from would send from the default
    in_file.update({shown_key(k): (v, False) for k, v in unknown.items()})
    env: dict[str, tuple[str, str, bool]] = {}
    for f in draw(st.lists(st.sampled_from(sorted(ENV_FIELDS)), unique=True, max_size=3)):
        good, bad = ENV_FIELDS[f]
        valid = draw(st.booleans()) if bad else True
        var = draw(st.sampled_from([f"GTM_{f.upper()}", f"gtm_{f}"]))
        env[f] = (var, draw(st.sampled_from(good if valid else bad)), valid)
    return "\n".join(lines) + "\n", in_file, env


@fast(250)
@given(configs())
def test_config_file_and_environment_load_or_the_error_names_source_and_field(
    tmp_path: Path, generated: tuple[str, dict[str, Oracle], dict[str, tuple[str, str, bool]]]
) -> None:
    text, in_file, env = generated
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    expected = {f: valid for f, (_, valid) in in_file.items()}
    expected.update({f: valid for f, (_, _, valid) in env.items()})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GTM_CONFIG", str(path))
        for var, value, _ in env.values():
            mp.setenv(var, value)
        try:
            loaded = load_settings()
        except SettingsError as exc:
            message = str(exc)
            named = {p.field for p in exc.problems}
            assert exc.problems
            for p in exc.problems:
                assert p.field in expected, (p, text)
                assert p.source == (
                    f"environment variable {env[p.field][0]}" if p.field in env else str(path)
                )
                assert str(p) in message and str(p).startswith(f"{p.source}: {p.field}: ")
            assert {f for f, valid in expected.items() if valid is False} <= named, message
            assert not {f for f, valid in expected.items() if valid is True} & named, message
            assert SECRET not in message and "900000" not in message, "secrets are not echoed"
            return
    assert not [f for f, valid in expected.items() if valid is False], (text, env)
    for f, (value, valid) in in_file.items():
        if valid and f not in env and f in ("smtp_port", "crm", "email", "smtp_starttls"):
            assert getattr(loaded, f) == value
    if "smtp_port" in env:
        assert loaded.smtp_port == int(env["smtp_port"][1])


hostile_toml = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=120).map(lambda t: t.encode("utf-8")),
    st.sampled_from(
        [
            "smtp_port = ",
            "smtp_port = 1\nsmtp_port = 2",
            "smtp_port = 1\nSMTP_PORT = 'x'",
            "[smtp_port]\na = 1",
            "a = [",
            "= 1",
            'crm = "local',
            "model_temperature = 1e999",
            "data_dir = '''\n'''",
            "\ufeffsmtp_port = 25",
            "smtp_port = 25\r\n",
            "a = " + "[" * 3000 + "]" * 3000,
            "a = \x7f",
        ]
    ).map(lambda t: t.encode("utf-8")),
    st.just(b"smtp_port = \xff\n"),
    st.just("crm = 'hubspot'".encode("utf-16")),
)


@fast(200)
@given(hostile_toml)
def test_any_bytes_as_a_config_file_give_settings_or_an_error_naming_the_file(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(data)
    try:
        keys = {shown_key(k).lower() for k in tomllib.loads(data.decode("utf-8-sig"))}
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        keys = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GTM_CONFIG", str(path))
        try:
            load_settings()
        except SettingsError as exc:
            assert str(exc).startswith(f"{path}: ") or str(exc).startswith("invalid settings:")
            for p in exc.problems:
                assert p.source == str(path) and str(p) in str(exc)
                if keys is not None:  # a readable file: the problem is a key in it
                    assert p.field.lower() in keys, (p, keys)
                else:
                    assert p.field == "" and str(p).startswith(f"{path}: ")
            return
    assert keys is not None, "an unreadable file must not load"


def test_missing_or_unreadable_config_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GTM_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(
        SettingsError, match="^" + re.escape(f"{tmp_path / 'nope.toml'}: no such config file")
    ):
        load_settings()
    monkeypatch.setenv("GTM_CONFIG", str(tmp_path))
    with pytest.raises(SettingsError, match="^" + re.escape(f"{tmp_path}: not a file")):
        load_settings()
    monkeypatch.delenv("GTM_CONFIG")  # the default location is optional
    assert load_settings().crm == "local"


def test_one_message_for_several_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'smtp_port = "abc"\ncrm = "salesforce"\nhubspot_token = 12345678\n'
        'email_form = "me@acme.dev"\nCRM = "local"\n'
    )
    monkeypatch.setenv("GTM_CONFIG", str(path))
    monkeypatch.setenv("GTM_MODEL_TEMPERATURE", "9")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    message = str(exc.value)
    assert message.splitlines()[0] == "invalid settings:"
    assert f"  {path}: smtp_port: Input should be a valid integer" in message
    assert f"  {path}: crm: Input should be 'local', 'hubspot' or 'attio'" in message
    assert "environment variable GTM_MODEL_TEMPERATURE: model_temperature: " in message
    assert f"  {path}: hubspot_token: Input should be a valid string" in message
    assert "12345678" not in message
    assert f"  {path}: email_form: unknown setting 'email_form'; did you mean 'email_from'?" in (
        message
    )
    assert f"  {path}: CRM: set twice (as 'crm' and 'CRM')" in message


def test_the_cli_reports_a_bad_config_file_by_file_and_field(tmp_path: Path) -> None:
    import os

    cfg = tmp_path / "config.toml"
    cfg.write_text('smtp_port = "abc"\nemial_from = "x@y.example"\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env["GTM_CONFIG"] = str(cfg)
    done = run_gtm(env, "status")
    assert done.returncode == 2
    assert f"{cfg}: smtp_port:" in done.stderr
    assert f"{cfg}: emial_from: unknown setting 'emial_from'; did you mean 'email_from'?" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
