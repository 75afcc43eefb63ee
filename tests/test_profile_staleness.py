"""A LinkedIn profile fact from a sighting older than the playbook's freshness limit is marked
stale, exactly as a website fact from an old page is: research marks it, the writer's prompt
says it is too old to present as news, and both inboxes show the stale mark."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from langgraph.runtime import Runtime
from rich.console import Console

from agents.personalize import personalize
from agents.qualify import qualify
from agents.research import research
from agents.state import State
from gtm.app.llm import ModelSettings, build_chat_model
from gtm.cli.review import draft_view
from gtm.domain.approval import ApprovalRequest
from gtm.domain.models import Fact
from gtm.domain.playbook import load_playbook
from gtm.web.app import WebInbox
from gtm.web.security import Session
from gtm.web.views import QueueFilters
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response
from tests.test_constrained_output import local_twins
from tests.test_graph import ACME, NOW, deps
from tests.test_qualification_views import ACCOUNT, CONTACT, DRAFT, ROW
from tools.profiles import ProfileSnapshot, ProfileStore, is_stale, visit_facts

DANA = ACME.contacts[0]
LIMIT = 365
"""The default playbook's freshness limit (`research.max_fact_age_days`), checked below."""
TODAY = NOW.date()


def _sighting(days_ago: int, key: str = "k", **fields: str) -> ProfileSnapshot:
    assert DANA.linkedin_url is not None
    return ProfileSnapshot(
        key=key,
        person=DANA.linkedin_url,
        seen_at=NOW - timedelta(days=days_ago),
        source="duxsoup:visit",
        fields=fields,
    )


def _facts(days_ago: int, max_age_days: int | None = LIMIT) -> tuple[Fact, ...]:
    snap = _sighting(days_ago, title="VP Engineering")
    with contextlib.closing(ProfileStore(":memory:")) as store:
        store.record([snap])
        seen = store.get(snap.person)
    assert seen is not None
    return visit_facts(seen, DANA.name, today=TODAY, max_age_days=max_age_days)


def test_the_playbook_sets_a_limit_to_test_against() -> None:
    assert load_playbook().research.max_fact_age_days == LIMIT


@pytest.mark.parametrize(
    ("days_ago", "stale"),
    [(0, False), (LIMIT - 1, False), (LIMIT, False), (LIMIT + 1, True), (3 * LIMIT, True)],
)
def test_a_sighting_older_than_the_limit_is_stale_and_the_boundary_day_is_not(
    days_ago: int, stale: bool
) -> None:
    (fact,) = _facts(days_ago)
    seen_on = (NOW - timedelta(days=days_ago)).date()
    assert (fact.stale, fact.published) == (stale, seen_on)
    assert fact.text.endswith(f"(seen by Dux-Soup on {seen_on.isoformat()}): VP Engineering")
    assert is_stale(seen_on, TODAY, LIMIT) is stale


def test_no_limit_or_no_today_marks_nothing() -> None:
    assert not _facts(10 * LIMIT, max_age_days=None)[0].stale
    snap = _sighting(10 * LIMIT, title="CTO")
    with contextlib.closing(ProfileStore(":memory:")) as store:
        store.record([snap])
        seen = store.get(snap.person)
    assert seen is not None
    assert not visit_facts(seen, DANA.name)[0].stale  # as before: no date to measure from
    assert not is_stale(date(2000, 1, 1), TODAY, None)


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with local_twins(tmp_path, profiles=ProfileStore(tmp_path / "profiles.sqlite")) as made:
        yield made


async def test_research_marks_the_old_sighting_and_the_writer_is_told(
    twins: dict[str, Any],
) -> None:
    # The title was seen 400 days ago; the company, in a later visit, 10 days ago.
    twins["profiles"].record(
        [_sighting(LIMIT + 35, "old", title="VP Engineering"), _sighting(10, "new", company="Q")]
    )
    answer = {"body": "Hi Dana, how is the monorepo work going?", "cited_fact_ids": []}
    with ScriptedOpenAIServer(script=[tool_call_response("DraftOutput", answer)]) as server:
        model = build_chat_model(
            ModelSettings(temperature=0), base_url=server.base_url, model="scripted"
        )
        d = deps(twins, model, profiles=twins["profiles"])  # type: ignore[arg-type]
        state = State(campaign="c1", channel="linkedin", account=ACME, contact=DANA)
        found = await research(state, Runtime(context=d))
        mine = {f.text: f for f in found["facts"] if f.source.startswith("duxsoup:visit@")}
        old_day = (NOW - timedelta(days=LIMIT + 35)).date()
        new_day = (NOW - timedelta(days=10)).date()
        title = f"Dana Ruiz's current title on LinkedIn (seen by Dux-Soup on {old_day}): "
        company = f"Dana Ruiz's current company on LinkedIn (seen by Dux-Soup on {new_day}): Q"
        assert {t: (f.stale, f.published) for t, f in mine.items()} == {
            title + "VP Engineering": (True, old_day),
            company: (False, new_day),
        }
        said = "research: 1 LinkedIn profile fact(s) seen more than 365 day(s) ago marked stale"
        assert said in found["events"]
        # Other sources are untouched: no date, never stale.
        others = [f for f in found["facts"] if not f.source.startswith("duxsoup:visit@")]
        assert others and not any(f.stale or f.published for f in others)

        written = State(
            campaign="c1", channel="linkedin", account=ACME, contact=DANA, facts=found["facts"]
        )
        await personalize(written, Runtime(context=d))
        server.assert_complete()
    (req,) = server.requests
    prompt = "\n".join(str(m["content"]) for m in req["messages"])
    told = [line for line in prompt.splitlines() if "Dux-Soup" in line]
    assert len(told) == 2, told
    [old_line] = [line for line in told if "VP Engineering" in line]
    [new_line] = [line for line in told if line is not old_line]
    assert old_line.endswith(f"(stale: dated {old_day}, too old to present as news)")
    assert "stale" not in new_line


def _stale_title() -> Fact:
    return Fact(
        id="f9",
        text="Mei Chen's current title on LinkedIn (seen by Dux-Soup on 2025-10-01): CTO",
        source="duxsoup:visit@2025-10-01",
        kind="person",
        url="https://www.linkedin.com/in/mei-chen",
        published=date(2025, 10, 1),
        stale=True,
    )


def _fresh_title() -> Fact:
    return _stale_title().model_copy(update={"id": "f8", "stale": False, "text": "Fresh: CEO"})


def test_the_terminal_inbox_marks_a_stale_profile_fact() -> None:
    draft = DRAFT.model_copy(update={"cited_fact_ids": ("f9", "f8")})
    request = ApprovalRequest(
        account_id="acme.ai",
        company="Acme AI",
        tier=1,
        review="always",
        contact=CONTACT,
        draft=draft,
        facts=(_stale_title(), _fresh_title()),
    )
    console = Console(record=True, width=160, color_system=None)
    console.print(draft_view(ROW, request, [], None))
    text = console.export_text()
    lines = text.splitlines()
    stale_at = next(i for i, line in enumerate(lines) if "[f9] Mei Chen's current title" in line)
    fresh_at = next(i for i, line in enumerate(lines) if "[f8] Fresh: CEO" in line)
    assert "seen 2025-10-01  STALE: not news" in lines[stale_at + 1]
    assert "seen" not in lines[fresh_at + 1] and text.count("STALE") == 1


def test_the_web_inbox_marks_a_stale_profile_fact() -> None:
    inbox = WebInbox(cast(Any, None), "token", contextlib.AsyncExitStack())
    stale, fresh = _stale_title(), _fresh_title()
    page = bytes(
        inbox.render(
            "draft.html",
            session=Session(reviewer="ana", csrf="c"),
            row=ROW,
            filters=QueueFilters(),
            prev_id=None,
            next_id=None,
            batch_ok=False,
            error=None,
            notes=[],
            edited=None,
            flash=[],
            worker_error=None,
            history=[],
            standing=None,
            now=datetime(2026, 12, 5, tzinfo=UTC),
            draft=DRAFT.model_copy(update={"cited_fact_ids": ("f9",)}),
            cited=[stale],
            missing_citations=[],
            other_facts=[fresh],
            quarantined=[],
            findings=(),
            spans=[],
            unsendable=[],
            contact=CONTACT,
            account=ACCOUNT,
            crm={},
            touches=[],
            card=None,
        ).body
    ).decode()
    assert re.search(
        r"\[f9\].*?seen 2025-10-01 <span class=\"badge flag stale\"[^>]*>stale</span>", page, re.S
    )
    assert page.count('class="badge flag stale"') == 1  # the fresh one carries no mark
    assert "Fresh: CEO" in page


def test_a_stale_profile_fact_backs_nothing_on_the_card_as_a_stale_page() -> None:
    """The same mark has the same weight: an old summary's pain backs no value unless the
    playbook counts stale facts."""
    summary = Fact(
        id="f1",
        text="Mei Chen's LinkedIn summary (seen by Dux-Soup on 2025-10-01): struggling with "
        "search latency at scale.",
        source="duxsoup:visit@2025-10-01",
        kind="person",
        published=date(2025, 10, 1),
        stale=True,
    )
    pb = load_playbook()
    assert not qualify(ACCOUNT, CONTACT, [summary], pb).element("identified_pain").known
    fresh = summary.model_copy(update={"stale": False})
    assert qualify(ACCOUNT, CONTACT, [fresh], pb).element("identified_pain").known
    counting = pb.model_copy(
        update={"qualification": pb.qualification.model_copy(update={"count_stale_facts": True})}
    )
    assert qualify(ACCOUNT, CONTACT, [summary], counting).element("identified_pain").known
