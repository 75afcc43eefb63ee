"""Which column of an exported list holds which of our fields: aliases per export format, the
user's map file, and the resolution of one header (what went where, what was ignored and why).

Aliases are data, one table per export, matched case- and punctuation-insensitively. Where the
headers come from (checked with the docs/pages/code search; third-party pages marked as such):

- HubSpot: HubSpot's knowledge base ("Set up your import files": contacts have First Name, Last
  Name, Email Address; owners go in a "[Object] owner" column) and the default property labels
  "Job title", "Company name", "Website URL" (listed by wildandfreetools.com, third party).
  HubSpot exports label columns with the property labels; a literal export file was not seen.
- Apollo: a people export's "First Name", "Last Name", "Title", "Company Name", "Email",
  "Person Linkedin Url", "Website", "Company Linkedin Url", "Industry", as parsed by public code
  that reads Apollo exports (two repositories); Apollo's own import docs name "Company Website",
  "Contact LinkedIn URL", "Contact Email".
- Sales Navigator scrapers: Apify's "Sales Navigator Search Export" (First Name, Last Name,
  Email, Summary, Job Title, Job Description, Job Started On, LinkedIn URL, Location, Company,
  Company LinkedIn ID) and Captain Data's snake_case output (full_name, first_name, last_name,
  company_name, job_title, headline, linkedin_profile_url, location). Phantombuster's own
  column names could NOT be confirmed and are not listed.
- Clay: a table's columns are named by its user; Clay's docs call the values "Full Name",
  "Company Name", "Company Domain" and "Email" (university.clay.com enrichment pages). A Clay
  export's default header could NOT be confirmed beyond those names.
- Dux-Soup: visit and scan fields "Profile", "First Name", "Middle Name", "Last Name", "Title",
  "Company", "CompanyWebsite", "Email", "Summary", "Location", "Industry", "My Notes",
  "VisitTime", "ScanTime" (harehimself/duxsoup-etl docs/WEBHOOK_PAYLOADS.md, third party; our
  own webhook reads "Profile" too).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gtm.domain.identity import PERSONAL_MAIL
from gtm.domain.models import Fact
from gtm.domain.pql import PQL, pql_facts

__all__ = [
    "FORMATS",
    "FIELDS",
    "REQUIRED",
    "ColumnMap",
    "MapFile",
    "MapFileError",
    "PERSONAL_MAIL",
    "PROFILE",
    "PQL",
    "pql_facts",
    "profile_facts",
    "RowValues",
    "key",
    "load_map",
    "resolve",
    "row_values",
]

REQUIRED = ("company", "domain", "contact_name")
PROFILE: dict[str, str] = {
    "headline": "{name}'s LinkedIn headline: {value}",
    "summary": "{name}'s LinkedIn summary: {value}",
    "location": "{name} is based in {value}.",
    "role_description": "{name} describes the current role as: {value}",
    "role_since": "{name} has been in the current role since {value}.",
    "notes": "Our notes on {name}: {value}",
}
"""Profile fields: what the user's own tools (a Dux-Soup visit export, a Sales Navigator scraper,
the list's notes) say about the person. Each non-empty cell becomes a fact about that contact,
with its file:row:column, worded as below. Nothing is ever fetched from LinkedIn."""
# PQL (the product signals and their labels) and `pql_facts` live in `gtm.domain.pql`, so research
# words a CRM property's signal as a column's; they are re-exported here as before.
PQL_ALIASES: dict[str, str] = {
    "signup_count": "signups",
    "weekly_active_users": "active_users",
    "monthly_active_users": "active_users",
    "usage_growth_pct": "usage_growth",
    "usage_growth_percent": "usage_growth",
}
"""Other spellings of the PQL columns ('Sign-ups' and 'Active Users' already match our names)."""
FIELDS = (
    *REQUIRED,
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
    *PROFILE,
    *PQL,
)
_MULTILINE = frozenset(
    {"description", "signals", "tech_stack", "summary", "role_description", "notes"}
)
PARTS = ("first_name", "last_name")
"""Not fields of ours: joined into contact_name when the list has no full-name column."""

FORMATS: dict[str, dict[str, str]] = {
    "hubspot": {
        "First Name": "first_name",
        "Last Name": "last_name",
        "Email": "email",
        "Email Address": "email",
        "Job Title": "contact_title",
        "Company Name": "company",
        "Website URL": "website",
        "Contact owner": "owner",
    },
    "apollo": {
        "First Name": "first_name",
        "Last Name": "last_name",
        "Title": "contact_title",
        "Company Name": "company",
        "Company": "company",
        "Email": "email",
        "Contact Email": "email",
        "Person Linkedin Url": "linkedin_url",
        "Contact LinkedIn URL": "linkedin_url",
        "Website": "website",
        "Company Website": "website",
        "Industry": "segment",
    },
    "sales_navigator": {
        "First Name": "first_name",
        "Last Name": "last_name",
        "Full Name": "contact_name",
        "full_name": "contact_name",
        "Job Title": "contact_title",
        "Company": "company",
        "company_name": "company",
        "Email": "email",
        "LinkedIn URL": "linkedin_url",
        "linkedin_profile_url": "linkedin_url",
        "Summary": "summary",
        "headline": "headline",
        "Job Description": "role_description",
        "Job Started On": "role_since",
        "Location": "location",
    },
    "clay": {
        "Full Name": "contact_name",
        "Company Name": "company",
        "Company Domain": "domain",
        "Email": "email",
    },
    "duxsoup": {
        "First Name": "first_name",
        "Last Name": "last_name",
        "Title": "contact_title",
        "Company": "company",
        "CompanyWebsite": "website",
        "Email": "email",
        "Profile": "linkedin_url",
        "Industry": "segment",
        "Summary": "summary",
        "Location": "location",
        "My Notes": "notes",
    },
}


def key(header: str) -> str:
    """A header as compared: lower case, letters and digits only ('Person Linkedin Url' and
    'person_linkedin_url' are the same column)."""
    return re.sub(r"[^a-z0-9]", "", header.lower())


def _aliases() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Normalised header → (our field, the formats that use it). One header never means two
    fields (a test checks the tables agree)."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {key(f): (f, ("ours",)) for f in FIELDS}
    out.update({key(p): (p, ("ours",)) for p in PARTS})
    out.update({key(a): (f, ("ours",)) for a, f in PQL_ALIASES.items()})
    for fmt, table in FORMATS.items():
        for header, target in table.items():
            k = key(header)
            known, fmts = out.get(k, (target, ()))
            if known != target:
                raise AssertionError(f"alias {header!r} maps to {known} and {target}")
            out[k] = (target, (*fmts, fmt))
    return out


_ALIASES = _aliases()


class MapFileError(ValueError):
    """The map file cannot be used; the message names the file and the bad key."""


@dataclass(frozen=True)
class MapFile:
    """The user's own mapping: our field → their column, and their columns that are facts."""

    path: Path
    fields: dict[str, str] = field(default_factory=dict)
    facts: tuple[str, ...] = ()


def load_map(path: Path) -> MapFile:
    """Read a YAML or TOML map file (`our_field: "Their Column"`, `facts: [...]`)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise MapFileError(f"{path}: cannot read the map file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise MapFileError(f"{path}: not UTF-8; re-save the map file as UTF-8") from None
    try:
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise MapFileError(f"{path}: cannot parse the map file ({exc})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MapFileError(f'{path}: expected `our_field: "Their Column"` lines')
    fields: dict[str, str] = {}
    facts: tuple[str, ...] = ()
    allowed = (*FIELDS, *PARTS)
    for k, v in data.items():
        if k == "facts":
            if not isinstance(v, list) or not all(isinstance(c, str) and c.strip() for c in v):
                raise MapFileError(f"{path}: facts: must be a list of column names")
            facts = tuple(c.strip() for c in v)
        elif k not in allowed:
            raise MapFileError(
                f"{path}: {k!r} is not one of our fields ({', '.join(allowed)}, facts)"
            )
        elif not isinstance(v, str) or not v.strip():
            raise MapFileError(f"{path}: {k}: must be the name of one of the list's columns")
        else:
            fields[k] = v.strip()
    return MapFile(path=path, fields=fields, facts=facts)


@dataclass(frozen=True)
class Used:
    index: int
    header: str
    field: str
    how: str
    """'our name', 'alias (apollo, hubspot)', 'map file', 'fact (map file)'."""


@dataclass
class ColumnMap:
    """One header resolved: which column fills which field, which are facts, what is ignored."""

    headers: list[str]
    used: list[Used] = field(default_factory=list)
    ignored: list[tuple[int, str, str]] = field(default_factory=list)
    repeated: dict[str, list[int]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unmatched_map: list[str] = field(default_factory=list)

    def index(self, name: str) -> int | None:
        """Column index of a field (or of first_name/last_name)."""
        return next((u.index for u in self.used if u.field == name), None)

    @property
    def facts(self) -> list[Used]:
        return [u for u in self.used if u.field == "fact"]

    @property
    def formats(self) -> list[str]:
        """The export(s) whose alias table matches most of this header's columns."""
        keys = {key(u.header) for u in self.used}
        counts = {f: len(keys & {key(h) for h in t}) for f, t in FORMATS.items()}
        best = max(counts.values(), default=0)
        return [f for f, n in counts.items() if n == best and n > 1]


def resolve(headers: Sequence[str], mapping: MapFile | None = None) -> ColumnMap:
    """Match a header row: the map file first, then our own names and the aliases."""
    cm = ColumnMap(headers=list(headers))
    by_key: dict[str, list[int]] = {}
    for i, h in enumerate(headers):
        by_key.setdefault(key(h), []).append(i)
    claimed: dict[int, str] = {}
    if mapping is not None:
        for ours, theirs in mapping.fields.items():
            idx = by_key.get(key(theirs), [])
            if not idx:
                cm.unmatched_map.append(f"{ours}: {theirs!r}")
            for i in idx:
                claimed[i] = ours
                cm.used.append(Used(i, headers[i], ours, "map file"))
        for theirs in mapping.facts:
            idx = by_key.get(key(theirs), [])
            if not idx:
                cm.unmatched_map.append(f"facts: {theirs!r}")
            for i in idx:
                if i not in claimed:
                    claimed[i] = "fact"
                    cm.used.append(Used(i, headers[i], "fact", "fact (map file)"))
    mapped = {f for f in claimed.values() if f != "fact"}
    for i, h in enumerate(headers):
        if i in claimed:
            continue
        hit = _ALIASES.get(key(h)) if key(h) else None
        if hit is None:
            cm.ignored.append((i, h, "not a column we use" if h.strip() else "no header"))
        elif hit[0] in mapped:
            cm.ignored.append((i, h, f"the map file takes {hit[0]} from another column"))
        else:
            fmts = [f for f in hit[1] if f != "ours"]
            how = "our name" if "ours" in hit[1] else f"alias ({', '.join(fmts)})"
            cm.used.append(Used(i, h, hit[0], how))
    for u in cm.used:
        if u.field != "fact":
            cm.repeated.setdefault(u.field, []).append(u.index)
    cm.repeated = {f: ix for f, ix in cm.repeated.items() if len(ix) > 1}
    have = {u.field for u in cm.used}
    if "contact_name" in have:
        for part in PARTS:
            for u in [u for u in cm.used if u.field == part]:
                cm.used.remove(u)
                cm.ignored.append((u.index, u.header, "the full name comes from another column"))
    have = {u.field for u in cm.used}
    alternatives = {
        "company": ("company",),
        "domain": ("domain", "website", "email"),
        "contact_name": ("contact_name", "first_name", "last_name"),
    }
    cm.missing = [f for f in REQUIRED if not have & set(alternatives[f])]
    return cm


def row_values(cm: ColumnMap, cells: list[str], line: int, name: str) -> RowValues:
    """Our fields from one record's cells, by the resolved header; facts keep their source."""

    def cell(i: int) -> str:
        return cells[i].replace("\r\n", "\n").replace("\r", "\n").strip()

    values = {u.field: cell(u.index) for u in cm.used if u.field not in ("fact", *PROFILE, *PQL)}
    facts = tuple(
        (u.header.strip(), cell(u.index), f"{name}:{line}:{u.header.strip()}")
        for u in cm.facts
        if cell(u.index)
    )
    profile = tuple(
        (u.field, cell(u.index), f"{name}:{line}:{u.header.strip()}")
        for u in cm.used
        if u.field in PROFILE and cell(u.index)
    )
    pql = tuple(
        (u.field, cell(u.index), f"{name}:{line}:{u.header.strip()}")
        for u in cm.used
        if u.field in PQL and cell(u.index)
    )
    return RowValues(
        values=values,
        facts=facts,
        profile=profile,
        pql=pql,
        multiline={
            cm.headers[u.index].strip().lower().replace(" ", "_")
            for u in cm.used
            if u.field in _MULTILINE or u.field == "fact"
        },
    )


@dataclass(frozen=True)
class RowValues:
    values: dict[str, str]
    facts: tuple[tuple[str, str, str], ...]
    """(column, value, source) of each non-empty cell the map file marks as a fact."""
    multiline: set[str]
    """Columns (as labelled in errors) whose cells may hold line breaks."""
    profile: tuple[tuple[str, str, str], ...] = ()
    """(profile field, value, source) of each non-empty profile cell (`PROFILE`)."""
    pql: tuple[tuple[str, str, str], ...] = ()
    """(PQL field, value, source) of each non-empty product-signal cell (`PQL`)."""


PROFILE_CHARS = 300
"""A profile fact's value, at most: a LinkedIn summary runs to 2,600 characters; the writer needs
its gist, not the whole of it in every prompt."""


def profile_facts(name: str, cells: Sequence[tuple[str, str, str]]) -> tuple[Fact, ...]:
    """The contact's profile cells as facts about them, e.g. "Mei Chen's LinkedIn summary: …"."""
    out = []
    for i, (fld, value, source) in enumerate(cells, 1):
        text = " ".join(value.split())
        if len(text) > PROFILE_CHARS:
            text = text[:PROFILE_CHARS].rsplit(" ", 1)[0] + " …"
        said = PROFILE[fld].format(name=name, value=text.rstrip("."))
        out.append(Fact(id=f"p{i}", text=said, source=source, kind="person"))
    return tuple(out)
