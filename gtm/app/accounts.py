"""Read an account list CSV: one row per contact, grouped into accounts by domain.

A bad row is reported as `file:row:field: reason` and skipped; good rows still load. Problems
with the file as a whole (missing, not UTF-8, missing columns) raise `AccountListError`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email

from gtm.app.list_columns import (
    PERSONAL_MAIL,
    REQUIRED,
    ColumnMap,
    MapFile,
    RowValues,
    pql_facts,
    profile_facts,
    resolve,
    row_values,
)
from gtm.domain.identity import PROFILE_URL_EXAMPLE, profile_url
from gtm.domain.models import Account, Contact, Fact

__all__ = [
    "load_accounts",
    "read_header",
    "AccountList",
    "RowError",
    "AccountListError",
    "COLUMNS",
    "REQUIRED",
]

OPTIONAL = (
    "website",
    "segment",
    "description",
    "contact_title",
    "linkedin_url",
    "email",
    "tech_stack",
    "signals",
    "open_source_user",
    "event",
    "owner",
)
COLUMNS = REQUIRED + OPTIONAL
MULTILINE = frozenset({"description", "signals", "tech_stack"})
"""Columns whose cells may hold line breaks; a name, title or address never does."""
MAX_ROWS = 100_000
_ALTERNATIVES = {
    "domain": " (or a website or email column to take it from)",
    "contact_name": " (or first_name and last_name)",
}

_TRUE = {"yes", "y", "true", "1"}
_FALSE = {"no", "n", "false", "0", ""}
_HOST = re.compile(r"^(?=.{3,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class AccountListError(ValueError):
    """The file as a whole cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class RowError:
    file: str
    row: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.row}:{self.field}: {self.reason}"


@dataclass
class AccountList:
    accounts: list[Account] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rows_read: int = 0
    columns: ColumnMap | None = None
    """How the header was read: what went where and what was ignored (the import preview)."""


class _Bad(Exception):
    def __init__(self, field: str, reason: str, *, labelled: bool = False) -> None:
        self.field, self.reason, self.labelled = field, reason, labelled


def _split(url: str) -> tuple[str, str | None]:
    """(scheme, host) of a URL; no host when it has none or cannot be parsed ('http://[::1')."""
    try:
        parts = urlsplit(url)
        return parts.scheme, parts.hostname
    except ValueError:
        return "", None


def _domain(value: str) -> str:
    v = value.strip().lower()
    if "://" in v:
        v = _split(v)[1] or ""
    v = v.split("/", 1)[0].removeprefix("www.")
    if not _HOST.match(v):
        raise _Bad("domain", f"{value!r} is not a domain like 'example.com'")
    return v


def _email(value: str) -> str | None:
    if not value:
        return None
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise _Bad("email", f"{value!r} is not a valid email address ({exc})") from None


def _linkedin(value: str) -> str | None:
    if not value:
        return None
    url = profile_url(value)
    if url is None:
        raise _Bad("linkedin_url", f"{value!r} is not a profile URL like '{PROFILE_URL_EXAMPLE}'")
    return url


def _website(value: str) -> str | None:
    """An http(s) URL; a bare host ('acme.com', as HubSpot and Apollo exports give it) gets
    https:// in front."""
    if not value:
        return None
    if "://" not in value and _HOST.match(value.strip().lower().rstrip("/").removeprefix("www.")):
        value = "https://" + value.strip().rstrip("/")
    scheme, host = _split(value)
    if scheme not in ("http", "https") or not host:
        raise _Bad("website", f"{value!r} is not an http(s) URL")
    return value


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise _Bad("open_source_user", f"{value!r} is not yes/no")


def _items(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s.strip() for s in value.split(";") if s.strip()))


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise AccountListError(f"{path}: no such file") from None
    except OSError as exc:
        raise AccountListError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise AccountListError(
            f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "re-save the file as UTF-8"
        ) from None


def load_accounts(path: Path, mapping: MapFile | None = None) -> AccountList:
    """Parse and validate an account list. Columns are matched by our names, the aliases of
    common exports, or the user's map file (`gtm.app.list_columns`); see `examples/README.md`."""
    name = path.name
    text = _read_text(path)
    if not text.strip():
        raise AccountListError(f"{path}: the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise AccountListError(f"{path}:1: cannot parse the header ({exc})") from None
    cols = [h.strip().lower().replace(" ", "_") for h in header]
    cm = resolve(header, mapping)
    result = AccountList(columns=cm)
    if cm.missing:
        wanted = ", ".join(m + _ALTERNATIVES.get(m, "") for m in cm.missing)
        raise AccountListError(
            f"{path}:1: missing required column(s) {wanted} "
            f"(found: {', '.join(c for c in cols if c) or 'none'})"
        )
    if cm.repeated:
        listed = "; ".join(
            f"{f!r} in columns {', '.join(str(i + 1) for i in ix)}" for f, ix in cm.repeated.items()
        )
        named = "; ".join(
            ", ".join(f"{i + 1} {header[i].strip()!r}" for i in ix) for ix in cm.repeated.values()
        )
        raise AccountListError(
            f"{path}:1: repeated column(s) {listed}; keep one of each, or name the one to use "
            f"in a --map file ({named})"
        )
    if cm.index("linkedin_url") is None and cm.index("email") is None:
        raise AccountListError(f"{path}:1: needs a linkedin_url or an email column")
    if cm.unmatched_map:
        result.warnings.append(
            f"{name}:1: the map file names column(s) the list does not have: "
            + ", ".join(cm.unmatched_map)
        )
    unknown = [cols[i] for i, h, why in cm.ignored if h.strip()]
    if unknown:
        result.warnings.append(f"{name}:1: ignoring unknown column(s) {', '.join(unknown)}")
    labels = {u.field: cols[u.index] for u in cm.used}

    groups: dict[str, dict[str, Any]] = {}
    seen_rows: dict[tuple[str, ...], int] = {}
    seen_people: dict[str, int] = {}
    lines = io.StringIO(text, newline="").readlines()
    records = _records(lines, reader.line_num + 1)
    while True:
        try:
            start, end, cells = next(records)
        except StopIteration:
            break
        if isinstance(cells, csv.Error):
            result.errors.append(RowError(name, start, "(row)", f"cannot parse ({cells})"))
            continue
        # A quote left open runs the record on to the end of the file (the last row's does
        # too, on one line): only such records are read again, strictly.
        if (end > start or end >= len(lines)) and _runaway("".join(lines[start - 1 : end])):
            # A quote opened on this row and never closed swallows the rows below it: reject
            # this row and read the file again from the next line, so the others still load.
            result.errors.append(
                RowError(
                    name,
                    start,
                    "(row)",
                    f"a quote opened on this row is never closed (it runs on to line {end}); "
                    "close it or remove it",
                )
            )
            records = _records(lines, start + 1)
            continue
        if not any(c.strip() for c in cells):
            continue
        result.rows_read += 1
        if result.rows_read > MAX_ROWS:
            raise AccountListError(f"{path}: more than {MAX_ROWS} rows; split the list")
        if len(cells) != len(cols):
            result.errors.append(
                RowError(
                    name, start, "(row)", f"has {len(cells)} cells, the header has {len(cols)}"
                )
            )
            continue
        # A quoted cell keeps the file's line breaks; Windows ones are not control characters.
        row = {
            c: v.replace("\r\n", "\n").replace("\r", "\n").strip()
            for c, v in zip(cols, cells, strict=True)
            if c
        }
        key = tuple(row.get(c, "") for c in cols if c)
        if key in seen_rows:
            result.errors.append(
                RowError(name, start, "(row)", f"duplicate row (same as row {seen_rows[key]})")
            )
            continue
        seen_rows[key] = start
        try:
            contact, account_fields = _validate(row, row_values(cm, cells, start, name))
        except _Bad as bad:
            fld = bad.field if bad.labelled else labels.get(bad.field, bad.field)
            result.errors.append(RowError(name, start, fld, bad.reason))
            continue
        dup = next((seen_people[k] for k in _person_keys(contact) if k in seen_people), None)
        if dup is not None:
            fld = "email" if contact.email and contact.email in seen_people else "linkedin_url"
            result.errors.append(
                RowError(name, start, labels[fld], f"duplicate contact (first seen on row {dup})")
            )
            continue
        for k in _person_keys(contact):
            seen_people[k] = start
        contact = contact.model_copy(update={"row": start})
        _merge(groups, account_fields, contact, start, name, result.warnings)

    for g in groups.values():
        facts = tuple(f.model_copy(update={"id": f"l{i}"}) for i, f in enumerate(g.pop("facts"), 1))
        result.accounts.append(Account(**g, source=name, facts=facts))
    return result


def read_header(path: Path, mapping: MapFile | None = None) -> ColumnMap:
    """How a list's header would be read, without reading its rows (the preview of a list
    whose layout is not known)."""
    text = _read_text(path)
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        raise AccountListError(f"{path}:1: cannot parse the header ({exc})") from None
    return resolve(header, mapping)


def _records(lines: list[str], first: int) -> Iterator[tuple[int, int, list[str] | csv.Error]]:
    """(first line, last line, cells or the parse error) of each record from line `first` on."""
    reader = csv.reader(io.StringIO("".join(lines[first - 1 :]), newline=""))
    done = 0
    while True:
        try:
            cells: list[str] | csv.Error = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            cells = exc
        yield first + done, first - 1 + reader.line_num, cells
        done = reader.line_num


def _runaway(record: str) -> bool:
    """A quote left open: the record only ends because the file does (a lenient reader takes
    everything after the quote, every row below it included, as one cell)."""
    try:
        for _ in csv.reader(io.StringIO(record, newline=""), strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _person_keys(c: Contact) -> list[str]:
    return [k for k in (c.email, c.linkedin_url.lower() if c.linkedin_url else None) if k]


def _validate(row: dict[str, str], got: RowValues) -> tuple[Contact, dict[str, Any]]:
    for col, value in row.items():
        if _CONTROL.search(value):
            raise _Bad(col, "contains control characters", labelled=True)
        if col not in MULTILINE and col not in got.multiline and "\n" in value:
            raise _Bad(
                col, "contains a line break (only description and signals may)", labelled=True
            )
    v = dict(got.values)
    name_field = "contact_name"
    if "contact_name" not in v:
        name_field = "first_name" if "first_name" in v else "last_name"
        v["contact_name"] = " ".join(x for x in (v.get("first_name"), v.get("last_name")) if x)
    for col in REQUIRED:  # in the order the checks always ran
        if col == "domain" and "domain" not in v:
            continue
        if not v.get(col):
            raise _Bad(name_field if col == "contact_name" else col, "is empty")
    if "domain" in v:
        domain = _domain(v["domain"])
        email = _email(v.get("email", ""))
    else:
        email = _email(v.get("email", ""))
        domain = _derived_domain(v, email)
    linkedin = _linkedin(v.get("linkedin_url", ""))
    if not email and not linkedin:
        fld = "linkedin_url" if "linkedin_url" in v else "email"
        raise _Bad(fld, "the contact has neither a LinkedIn URL nor an email")
    contact = Contact(
        name=v["contact_name"],
        title=v.get("contact_title", ""),
        linkedin_url=linkedin,
        email=email,
        profile=profile_facts(v["contact_name"], got.profile),
    )
    fields: dict[str, Any] = {
        "account_id": domain,
        "company": v["company"],
        "domain": domain,
        "website": _website(v.get("website", "")),
        "segment": v.get("segment", ""),
        "description": v.get("description", ""),
        "signals": _items(v.get("signals", "")),
        "tech_stack": _items(v.get("tech_stack", "")),
        "open_source_user": _bool(v.get("open_source_user", "")),
        "event": v.get("event") or None,
        "owner": v.get("owner") or None,
        "facts": tuple(
            Fact(id=f"l{i}", text=f"{v['company']}: {col}: {val}", source=src, kind="company")
            for i, (col, val, src) in enumerate(got.facts, 1)
        )
        + pql_facts(v["company"], got.pql),
    }
    return contact, fields


def _derived_domain(v: dict[str, str], email: str | None) -> str:
    """Without a domain column: the website's host, else the email's domain, unless it is a
    personal mail provider's."""
    if v.get("website"):
        try:
            return _domain(v["website"])
        except _Bad as bad:
            raise _Bad("website", bad.reason) from None
    if email:
        host = email.rsplit("@", 1)[1]
        if host in PERSONAL_MAIL:
            raise _Bad(
                "email",
                f"{host} is a personal mail provider: the company's domain cannot come from it; "
                "add a domain or website column",
            )
        return _domain(host)
    fld = "website" if "website" in v else "email"
    raise _Bad(fld, "is empty, and the list has no domain column to take the company from")


def _merge(
    groups: dict[str, dict[str, Any]],
    fields: dict[str, Any],
    contact: Contact,
    line: int,
    name: str,
    warnings: list[str],
) -> None:
    """First row of a domain wins; later rows fill blanks and add contacts and signals."""
    g = groups.get(fields["domain"])
    if g is None:
        groups[fields["domain"]] = {**fields, "contacts": (contact,), "rows": (line,)}
        return
    if fields["company"] != g["company"]:
        warnings.append(
            f"{name}:{line}:company: {fields['company']!r} differs from "
            f"{g['company']!r} for {g['domain']} on row {g['rows'][0]}; keeping the first"
        )
    known = {f.text for f in g["facts"]}
    g["facts"] = (*g["facts"], *(f for f in fields["facts"] if f.text not in known))
    for k in ("website", "segment", "description", "event", "owner"):
        if not g[k] and fields[k]:
            g[k] = fields[k]
    g["open_source_user"] = g["open_source_user"] or fields["open_source_user"]
    g["signals"] = tuple(dict.fromkeys((*g["signals"], *fields["signals"])))
    g["tech_stack"] = tuple(dict.fromkeys((*g["tech_stack"], *fields["tech_stack"])))
    g["contacts"] = (*g["contacts"], contact)
    g["rows"] = (*g["rows"], line)
