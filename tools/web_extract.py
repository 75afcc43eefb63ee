"""From a page's HTML to what research may read: visible main text, title, date, and links.

A page can hide text from its human reader and still feed it to a model: an element styled
`display:none`, a `hidden` attribute, an HTML comment, characters nobody sees inside a word.
`extract` removes all of that before the main text is extracted (with trafilatura, a maintained
extraction library) and lists what it removed in `Extracted.hidden`, so research can quarantine
a page that tried. The same idea as `evals.unicode` (the Unicode property, not a list kept
here); tools may not import evals, so the few lines are repeated rather than shared.

The publication date is the one the page states (meta tags, `<time>`, JSON-LD, through
trafilatura's metadata and htmldate) with htmldate's extensive search turned off: a date
guessed from any number in the text is worse than no date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urljoin, urlsplit, urlunsplit

import regex
import trafilatura
from lxml import html as lxml_html
from lxml.etree import Comment, ParserError, _Element
from lxml.html import HtmlElement

__all__ = ["Extracted", "extract", "pick_links", "strip_invisible", "KINDS"]

_IGNORABLE = regex.compile(r"[[\p{Default_Ignorable_Code_Point}\p{Cc}]--[\t\n\r]]", regex.V1)
_HIDING_STYLE = regex.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9])"
    r"|opacity\s*:\s*0(?![.\d]*[1-9])|(?<![-\w])(?:height|width)\s*:\s*0(?![.\d]*[1-9])",
    regex.IGNORECASE,
)
_DROPPED_TAGS = ("script", "style", "template", "noscript", "iframe", "object", "embed")

KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("about", ("about", "company", "team", "mission", "who-we-are")),
    ("blog", ("blog", "changelog", "news", "release-notes", "releases", "updates", "press")),
    ("customers", ("customers", "case-studies", "case-study", "stories", "testimonials")),
    ("careers", ("careers", "jobs", "join", "hiring", "work-with-us")),
    ("docs", ("docs", "documentation", "developers", "guides", "api")),
)
"""The pages that matter for outreach, in the order they are worth fetching, with the words
their path or link text carries."""


@dataclass(frozen=True)
class Extracted:
    """What a page shows a person, and what it hid."""

    title: str | None
    text: str
    published: date | None
    links: list[tuple[str, str]] = field(default_factory=list)
    """(absolute URL, link text) of every visible http(s) link, in page order."""
    hidden: list[str] = field(default_factory=list)
    """What was removed before extraction, each as `why: text` (cut to 200 characters)."""


def strip_invisible(text: str) -> tuple[str, int]:
    """`text` without default-ignorable and control characters, and how many there were."""
    cleaned, n = _IGNORABLE.subn("", text)
    return cleaned, n


def extract(page_html: str, url: str) -> Extracted:
    """The visible main text, title and stated date of `page_html`, fetched from `url`."""
    hidden: list[str] = []
    try:
        tree = lxml_html.document_fromstring(page_html)
    except (ParserError, ValueError):
        return Extracted(title=None, text="", published=None, hidden=hidden)
    _drop_hidden(tree, hidden)
    n = _strip_tree(tree)
    if n:
        hidden.append(f"invisible characters: {n} removed")
    links = _links(tree, url)
    doc = trafilatura.bare_extraction(
        tree,
        url=url,
        with_metadata=True,
        favor_recall=True,
        include_comments=False,
        include_tables=True,
        date_extraction_params={"original_date": True, "extensive_search": False},
    )
    title = getattr(doc, "title", None) or _title(tree)
    text = getattr(doc, "text", None) or _body_text(tree)
    text, _ = strip_invisible(text)
    if title:
        title, _ = strip_invisible(title)
    return Extracted(
        title=title or None,
        text=text.strip(),
        published=_date(getattr(doc, "date", None)),
        links=links,
        hidden=hidden,
    )


def pick_links(home_url: str, links: list[tuple[str, str]], limit: int) -> list[tuple[str, str]]:
    """Up to `limit` (kind, URL) pairs on the home page's own site, one per kind in `KINDS`
    order: about, blog or changelog, customers, careers, docs."""
    site = _site(home_url)
    found: dict[str, str] = {}
    home = _canonical(home_url)
    for href, label in links:
        if _site(href) != site or _canonical(href) == home:
            continue
        path = urlsplit(href).path.lower().strip("/")
        words = regex.split(r"[/_.\s]+", f"{path} {label.lower()}")
        for kind, keys in KINDS:
            if kind not in found and any(w in keys for w in words if w):
                found[kind] = _canonical(href)
                break
    ordered = [(kind, found[kind]) for kind, _ in KINDS if kind in found]
    return ordered[:limit]


def _site(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    port = urlsplit(url).port
    host = host.removeprefix("www.")
    return f"{host}:{port}" if port else host


def _canonical(url: str) -> str:
    """The URL without its fragment (a `#team` link is the page it is on)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def _drop_hidden(tree: _Element, hidden: list[str]) -> None:
    for node in list(tree.iter(Comment)):
        if (node.text or "").strip():
            hidden.append(f"HTML comment: {_cut(node.text or '')}")
        _remove(node)
    for tag in _DROPPED_TAGS:
        for node in tree.iter(tag):
            _remove(node)
    marked = [(n, w) for n in tree.iter() if isinstance(n.tag, str) for w in [_hiding(n)] if w]
    gone = {n for n, _ in marked}
    for node, why in marked:
        if any(up in gone for up in node.iterancestors()):
            continue  # removed with its hidden ancestor, and reported there
        text = " ".join(_text(node).split())
        if text:
            hidden.append(f"{why}: {_cut(text)}")
        _remove(node)


def _strip_tree(tree: _Element) -> int:
    """Remove invisible characters from every text node and attribute value; how many."""
    total = 0
    for node in tree.iter():
        for part in ("text", "tail"):
            value = getattr(node, part)
            if value and not value.isascii():
                value, n = strip_invisible(value)
                setattr(node, part, value)
                total += n
        if isinstance(node.tag, str):
            for key, value in node.attrib.items():
                if isinstance(value, str) and not value.isascii():
                    cleaned, n = strip_invisible(value)
                    node.set(key, cleaned)
                    total += n
    return total


def _hiding(node: _Element) -> str | None:
    if node.get("hidden") is not None:
        return "hidden attribute"
    if (node.get("aria-hidden") or "").lower() == "true":
        return "aria-hidden"
    if node.tag == "input" and (node.get("type") or "").lower() == "hidden":
        return "hidden input"
    m = _HIDING_STYLE.search(node.get("style") or "")
    return m.group(0).replace(" ", "") if m else None


def _remove(node: _Element) -> None:
    """Remove `node` and its content, keeping the text that follows it."""
    parent = node.getparent()
    if parent is None:
        return
    tail = node.tail
    prev = node.getprevious()
    if tail:
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(node)


def _links(tree: _Element, base: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for a in tree.iter("a"):
        href = (a.get("href") or "").strip()
        if not href:
            continue
        absolute = urljoin(base, href)
        if urlsplit(absolute).scheme in ("http", "https"):
            out.append((absolute, " ".join(_text(a).split())))
    return out


def _text(node: _Element) -> str:
    if isinstance(node, HtmlElement):
        return str(node.text_content())
    return "".join(str(t) for t in node.itertext())


def _title(tree: _Element) -> str | None:
    found = tree.findtext(".//title")
    return " ".join(found.split()) if found else None


def _body_text(tree: _Element) -> str:
    """The visible text when trafilatura finds no main content (a very short page)."""
    body = tree.find("body")
    node = body if body is not None else tree
    lines = (" ".join(line.split()) for line in _text(node).splitlines())
    return "\n".join(line for line in lines if line)


def _date(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:199] + "…"
