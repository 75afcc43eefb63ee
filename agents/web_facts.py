"""Website facts for research: the model proposes, the page decides.

For one account's website (`WebResearcher.fetch_site`), each readable page goes to the model with
structured output; it answers with facts, each with the sentence of the page it comes from, or
"unknown". Code keeps a fact only if its quote is on the page (`quote_on_page`: whitespace,
quote marks, dashes and case normalised) and every number the fact states is in its quote, and
records the page's URL, fetch time and stated date. A fact whose page is dated longer ago than
the playbook's `research.max_fact_age_days` is marked stale.

Hostile pages: text the page hid from its reader (hidden elements, comments; `Page.hidden`)
never reaches the model. Hidden text that tries to instruct a writer goes to research's
quarantine like any other such text, and the page gives no facts at all. A site that cannot be
read never fails the account: the events say which source failed, and research goes on.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.runnables import Runnable
from pydantic import BaseModel, Field, ValidationError

from evals.text import find_injection
from gtm.domain.models import Account
from prompts import PromptTemplate, load_prompt
from tools.profiles import is_stale

if TYPE_CHECKING:  # hints only: trafilatura loads with the web reader, not with the graph
    from tools.web import Page, WebResearcher

__all__ = [
    "ProposedFact",
    "WebFacts",
    "WebFact",
    "Hidden",
    "WebFindings",
    "website_of",
    "quote_on_page",
    "web_facts",
]

PROMPT = "research_web_facts"
PAGE_CHARS = 4000
"""The page text the model reads, at most: room for the prompt and the answer in a 2,048-token
context (the embedded model's). Quotes are checked against the whole page."""
MAX_FACTS = 5
"""Facts kept per page, at most."""
_MIN_QUOTE_WORDS = 3

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u00ab": '"',
        "\u00bb": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u00a0": " ",
    }
)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


class ProposedFact(BaseModel):
    """One fact the page states, with the sentence it states it in."""

    text: str = Field(description="The fact about the company, in one short sentence.")
    quote: str = Field(
        description="The one sentence of the page this fact comes from, copied exactly."
    )


class WebFacts(BaseModel):
    """Facts one web page states about the company; none, and unknown, if it says nothing."""

    facts: list[ProposedFact] = Field(
        default_factory=list, description="The specific facts, each with its exact sentence."
    )
    unknown: bool = Field(
        default=False, description="True if the page says nothing specific about the company."
    )


@dataclass(frozen=True)
class WebFact:
    """A fact whose quote was found on its page."""

    text: str
    quote: str
    url: str
    fetched_at: datetime
    published: date | None
    stale: bool


@dataclass(frozen=True)
class Hidden:
    """Text a page hid from its reader that tries to instruct a writer: for the quarantine."""

    text: str
    source: str
    why: str


@dataclass
class WebFindings:
    """What one website gave research."""

    facts: list[WebFact] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def website_of(account: Account) -> str:
    """The site to read: the list's website, else the account's primary web domain."""
    return account.website or f"https://{account.domain}"


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    return " ".join(text.split()).casefold()


def quote_on_page(quote: str, page_text: str) -> bool:
    """Whether `quote` (at least three words) is in `page_text`, whitespace, quote marks,
    dashes and case aside. A trailing full stop the model left off or added does not matter."""
    q = _normal(quote).strip(" .")
    return len(q.split()) >= _MIN_QUOTE_WORDS and q in _normal(page_text)


def _numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(unicodedata.normalize("NFKC", text))}


async def web_facts(
    web: WebResearcher,
    model: BaseChatModel,
    account: Account,
    *,
    today: date,
    max_age_days: int | None,
    injection_patterns: tuple[re.Pattern[str], ...],
) -> WebFindings:
    """Fetch `account`'s website and keep the facts whose quotes its pages really contain."""
    out = WebFindings()
    url = website_of(account)
    try:
        site = await web.fetch_site(url)
    except Exception as exc:  # fetch_site never raises; a bug there must not fail the account
        out.events.append(f"research: website source failed: {url}: {type(exc).__name__}")
        return out
    home = site.pages[0]
    if home.error is not None:
        out.events.append(f"research: website source failed: {home.url}: {home.error}")
        return out
    unread = [p for p in site.pages if p.error is not None]
    if unread:
        out.events.append(
            "research: website pages not read: "
            + "; ".join(f"{p.kind} {p.url} ({p.error})" for p in unread)
        )
    readable = []
    for page in site.readable:
        if _quarantine_hidden(page, out, injection_patterns):
            continue
        readable.append(page)
    prompt = load_prompt(PROMPT)
    reader = model.with_structured_output(WebFacts, method="function_calling")
    answers = await asyncio.gather(*(_ask(reader, prompt, account, p) for p in readable))
    for page, answer in zip(readable, answers, strict=True):
        if isinstance(answer, str):
            out.events.append(f"research: {page.url}: {answer}")
            continue
        # An undated page is never stale: there is no day to measure its age from.
        stale = page.published is not None and is_stale(page.published, today, max_age_days)
        kept = 0
        for proposed in answer.facts[:MAX_FACTS]:
            reason = _rejected(proposed, page)
            if reason is not None:
                out.events.append(f"research: dropped a fact from {page.url}: {reason}")
                continue
            out.facts.append(
                WebFact(
                    text=" ".join(proposed.text.split()),
                    quote=" ".join(proposed.quote.split()),
                    url=page.url,
                    fetched_at=page.fetched_at,
                    published=page.published,
                    stale=stale,
                )
            )
            kept += 1
        dated = f", dated {page.published}" if page.published else ", undated"
        stale_note = " (stale)" if kept and stale else ""
        out.events.append(
            f"research: {page.url}{dated}: {kept} fact(s) kept{stale_note}"
            if kept
            else f"research: {page.url}{dated}: unknown (no fact with a quote on the page)"
        )
    return out


def _quarantine_hidden(page: Page, out: WebFindings, patterns: tuple[re.Pattern[str], ...]) -> bool:
    """Quarantine the page's hidden text that instructs a writer; True if there was any (the
    page then gives no facts: it was written to steer a model, not to inform a reader)."""
    hostile = False
    for item in page.hidden:
        why, _, text = item.partition(": ")
        if not text or why == "invisible characters":
            continue
        hit = find_injection(text, patterns)
        if hit is None:
            continue
        hostile = True
        out.hidden.append(Hidden(text=text, source=f"{page.url} ({why})", why=hit[1]))
    if hostile:
        out.events.append(
            f"research: {page.url} hides instructions from its readers: no facts taken from it"
        )
    return hostile


async def _ask(
    reader: Runnable[Any, Any], prompt: PromptTemplate, account: Account, page: Page
) -> WebFacts | str:
    """The model's facts for one page, or why there are none."""
    system, user = prompt.render(
        company=account.company,
        page_kind=page.kind,
        page_url=page.url,
        page_title=page.title or "none",
        page_text=page.text[:PAGE_CHARS],
        max_facts=str(MAX_FACTS),
    )
    try:
        raw = await reader.ainvoke([SystemMessage(system), HumanMessage(user)])
        return raw if isinstance(raw, WebFacts) else WebFacts.model_validate(raw)
    except (ValidationError, ValueError) as exc:
        return f"the model's answer was unusable ({type(exc).__name__})"


def _rejected(proposed: ProposedFact, page: Page) -> str | None:
    """Why a proposed fact is not kept, or None."""
    if not proposed.text.strip():
        return "no fact text"
    if not quote_on_page(proposed.quote, page.text):
        return f"its quote is not on the page ({_cut(proposed.quote)!r})"
    missing = _numbers(proposed.text) - _numbers(proposed.quote)
    if missing:
        return f"it states {', '.join(sorted(missing))}, which its quote does not"
    return None


def _cut(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 80 else text[:79] + "…"
