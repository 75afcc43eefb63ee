"""Prompt variants: a campaign splits its accounts at random among versions of the writer prompts,
records the draw before anything is drafted, and writes every step of a thread with its variant.

In process, on the real stores and the local twins, with an injected clock and the scripted
OpenAI-compatible writer on loopback; the prompts come from a temporary directory holding the
shipped prompts (version 1) and a version 2 whose system prompt says something visibly different,
so each request the model receives shows which variant wrote it. The last tests go through the
real CLI.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gtm.app.accounts import load_accounts
from gtm.app.campaigns import (
    WRITER_PROMPTS,
    CampaignBook,
    PromptVariantError,
    PromptVariants,
    VariantsMismatch,
    check_prompt_variants,
    parse_prompt_variants,
)
from gtm.app.runner import decide, run_campaign
from gtm.app.settings import Settings
from gtm.app.workspace import Workspace, open_workspace
from gtm.domain.models import Account, Decision, Draft
from gtm.domain.playbook import load_playbook
from tests.support.cli import run_gtm
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)  # a Monday
SEED = 20261102
MARK = "Variant two: open with one question about their work."
"""The visible change in version 2's system prompts."""
HEADER = "company,domain,segment,description,contact_name,contact_title,linkedin_url,email,signals"
FIRST = ["Dana", "Omar", "Ines", "Maya", "Lena", "Tariq", "Sofia", "Kenji", "Ada", "Noor"]
LAST = ["Ruiz", "Haddad", "Duarte", "Chen"]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _rows(n: int) -> list[str]:
    rows = []
    for i in range(n):
        first, last = FIRST[i % len(FIRST)], LAST[i // len(FIRST) % len(LAST)]
        slug = f"{first}-{last}-{i}".lower()
        rows.append(
            f"Quill{i},quill{i}.dev,AI coding assistant,Builds an AI coding assistant for teams.,"
            f"{first} {last},VP Engineering,https://www.linkedin.com/in/{slug},"
            f'{first.lower()}@quill{i}.dev,"Hiring {i + 2} ML engineers;Raised a Series B in 2026"'
        )
    return rows


def _accounts(tmp_path: Path, n: int) -> list[Account]:
    csv = tmp_path / "accounts.csv"
    csv.write_text("\n".join([HEADER, *_rows(n)]) + "\n", encoding="utf-8")
    listing = load_accounts(csv)
    assert not listing.errors, listing.errors
    assert len(listing.accounts) == n
    return listing.accounts


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    """The shipped prompts, plus `<writer>@2.md` for each writer prompt: version 2, one more
    line in its system section."""
    folder = tmp_path / "prompts"
    folder.mkdir()
    for f in (ROOT / "prompts").glob("*.md"):
        shutil.copy(f, folder / f.name)
    for name in WRITER_PROMPTS:
        text = (folder / f"{name}.md").read_text(encoding="utf-8")
        assert 'version: "1"' in text and "## system\n" in text
        two = text.replace('version: "1"', 'version: "2"', 1).replace(
            "## system\n", f"## system\n{MARK}\n", 1
        )
        (folder / f"{name}@2.md").write_text(two, encoding="utf-8")
    return folder


class Writer:
    """`write_from_facts`, which also notes, as each request arrives, what the ledger says of the
    account's variant then; accounts in `down` get an answer with no choices (the account
    fails, as with a broken endpoint)."""

    def __init__(self, ledger_path: Path) -> None:
        self.ledger_path = ledger_path
        self.down: set[str] = set()
        self.seen: list[tuple[str, str | None, bool]] = []
        """(company, its ledger variant when the request came, whether MARK was in the
        system prompt), one per request."""

    def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
        company = _company(request)
        db = sqlite3.connect(self.ledger_path)
        try:
            got = db.execute("SELECT variant FROM threads WHERE company = ?", (company,)).fetchone()
        finally:
            db.close()
        self.seen.append((company, got[0] if got else None, MARK in _system(request)))
        answer = write_from_facts(request)
        return {**answer, "choices": []} if company in self.down else answer


def _company(request: dict[str, Any]) -> str:
    found = re.search(r"Company: (.+)", request["messages"][-1]["content"])
    assert found, "the writer's user prompt names the company"
    return found.group(1).strip()


def _system(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def writer(tmp_path: Path) -> Writer:
    return Writer(tmp_path / "data" / "ledger.sqlite")


@pytest.fixture
def server(writer: Writer) -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(responder=writer) as srv:
        yield srv


@pytest.fixture
def settings(tmp_path: Path, server: ScriptedOpenAIServer) -> Settings:
    return Settings(data_dir=tmp_path / "data", model_base_url=server.base_url, model="x")


@pytest.fixture
async def ws(settings: Settings, clock: Clock, prompts_dir: Path) -> AsyncIterator[Workspace]:
    async with open_workspace(
        settings, with_model=True, clock=clock, prompts_dir=prompts_dir
    ) as rt:
        yield rt


def _start(ws: Workspace, prompts_dir: Path, campaign: str = "fall", seed: int = SEED) -> None:
    """What `gtm run --prompt-variants 1,2` does before the first account."""
    planned = ws.campaigns.planned_variants(campaign, ("1", "2"))
    check_prompt_variants(planned, prompts_dir)
    ws.campaigns.resolve(
        campaign, ws.playbook, explicit=False, adopt=False, variants=("1", "2"), seed=seed
    )


async def _draft(ws: Workspace, thread_id: str) -> Draft:
    snapshot = await ws.graph.aget_state({"configurable": {"thread_id": thread_id}})
    draft = snapshot.values["draft"]
    assert isinstance(draft, Draft)
    return draft


def _variants(ws: Workspace, campaign: str = "fall") -> dict[str, str | None]:
    return {r.account_id: r.variant for r in ws.ledger.rows(campaign=campaign)}


# --------------------------------------------------------------------------- the draw


async def test_accounts_are_split_at_random_recorded_first_and_written_with_their_variant(
    ws: Workspace, prompts_dir: Path, writer: Writer, tmp_path: Path
) -> None:
    accounts = _accounts(tmp_path, 40)
    _start(ws, prompts_dir)
    summary = await run_campaign(ws, accounts, campaign="fall", channel="linkedin")
    assert not summary.failures, summary.failures
    assert summary.by_status["waiting_for_approval"] == 40

    record = ws.campaigns.get("fall")
    assert record is not None and record.variants == PromptVariants(versions=("1", "2"), seed=SEED)
    rows = ws.ledger.rows(campaign="fall")
    drawn = [r.variant for r in rows]
    # Reproducible from the recorded seed, both arms used, roughly even.
    assert drawn == [record.variants.assign(r.account_id) for r in rows]
    assert 12 <= drawn.count("1") <= 28 and drawn.count("1") + drawn.count("2") == 40
    assert drawn != ["1", "2"] * 20 and drawn != ["2", "1"] * 20  # not round-robin by row order

    for r in rows:
        draft = await _draft(ws, r.thread_id)
        assert draft.prompt_version == f"personalize_linkedin_note@{r.variant}"
    # Every request: the account's variant was already on disk, and it is the one that wrote.
    # (A draft the review sends back is rewritten: revisions too use the thread's variant.)
    assert {c for c, _, _ in writer.seen} == {r.company for r in rows}
    by_company = {r.company: r.variant for r in rows}
    for company, variant_then, marked in writer.seen:
        assert variant_then == by_company[company], company
        assert marked == (variant_then == "2"), company

    # The draw does not depend on list order: the same seed, the list reversed, the same split.
    writer.seen.clear()
    _start(ws, prompts_dir, campaign="spring")
    await run_campaign(ws, accounts[::-1], campaign="spring", channel="linkedin")
    assert _variants(ws, "spring") == _variants(ws, "fall")


async def test_a_resumed_run_keeps_each_threads_recorded_variant(
    settings: Settings, clock: Clock, prompts_dir: Path, writer: Writer, tmp_path: Path
) -> None:
    accounts = _accounts(tmp_path, 12)
    other = PromptVariants(versions=("1", "2"), seed=SEED + 1)
    first = PromptVariants(versions=("1", "2"), seed=SEED)
    # The accounts a re-draw under another seed would move: they fail on the first run.
    movers = [a for a in accounts if first.assign(a.account_id) != other.assign(a.account_id)]
    assert len(movers) >= 2
    writer.down = {a.company for a in movers[:3]}

    async with open_workspace(
        settings, with_model=True, clock=clock, prompts_dir=prompts_dir
    ) as ws:
        _start(ws, prompts_dir)
        summary = await run_campaign(ws, accounts, campaign="fall", channel="linkedin")
        assert len(summary.failures) == len(writer.down)
        before = _variants(ws)
        failed = [r for r in ws.ledger.rows(campaign="fall") if r.status == "failed"]
        assert {r.company for r in failed} == writer.down
        assert all(r.variant is not None for r in failed)  # drawn before the draft was tried

    # Between runs the recorded seed changes (as if a draw were redone): the ledger still wins.
    db = sqlite3.connect(settings.path("ledger.sqlite"))
    with db:
        db.execute("UPDATE campaigns SET variant_seed = ? WHERE name = 'fall'", (other.seed,))
    db.close()
    writer.down.clear()
    writer.seen.clear()
    async with open_workspace(
        settings, with_model=True, clock=clock, prompts_dir=prompts_dir
    ) as ws:
        summary = await run_campaign(ws, accounts, campaign="fall", channel="linkedin")
        assert not summary.failures, summary.failures
        assert summary.by_status["waiting_for_approval"] == 12
        assert _variants(ws) == before
        for r in ws.ledger.rows(campaign="fall"):
            draft = await _draft(ws, r.thread_id)
            assert draft.prompt_version == f"personalize_linkedin_note@{r.variant}"
    assert {c for c, _, _ in writer.seen} == {a.company for a in movers[:3]}
    account_of = {a.company: a.account_id for a in accounts}
    for company, variant_then, marked in writer.seen:
        assert variant_then == before[account_of[company]], company
        assert marked == (variant_then == "2"), company


async def test_a_follow_up_keeps_its_threads_variant(
    ws: Workspace, clock: Clock, prompts_dir: Path, writer: Writer, tmp_path: Path
) -> None:
    accounts = _accounts(tmp_path, 6)
    _start(ws, prompts_dir)
    await run_campaign(ws, accounts, campaign="fall", channel="email")
    rows = ws.ledger.rows(campaign="fall")
    assert {r.variant for r in rows} == {"1", "2"}
    for r in rows:
        done = await decide(ws, r.id, Decision(action="approve", reviewer="tess", at=clock.now))
        assert done.status == "sent", (done.status, done.detail)

    writer.seen.clear()
    clock.now = T0 + timedelta(days=4, hours=1)  # the playbook's first email follow-up is due
    summary = await run_campaign(ws, accounts, campaign="fall", channel="email")
    assert summary.sequences is not None and len(summary.sequences.advanced) == 6
    for r in ws.ledger.rows(campaign="fall"):
        assert r.seq_pos == 1 and r.status == "waiting_for_approval", (r.status, r.detail)
        draft = await _draft(ws, r.thread_id)
        assert draft.prompt_version == f"personalize_email@{r.variant}"
    assert {c for c, _, _ in writer.seen} == {r.company for r in rows}
    variant_of = {r.company: r.variant for r in rows}
    assert all(marked == (variant_of[c] == "2") for c, _, marked in writer.seen)
    sent = ws.deps.outbox.entries(campaign="fall", state="sent")
    assert {e.touch.prompt_version for e in sent} <= {"personalize_email@1", "personalize_email@2"}


# --------------------------------------------------------------------------- the rules


def test_a_campaign_keeps_its_variants_and_refuses_others(tmp_path: Path) -> None:
    pb = load_playbook()
    book = CampaignBook(tmp_path / "ledger.sqlite")
    try:
        assert book.planned_variants("fall", ("1", "2")) == ("1", "2")
        book.resolve("fall", pb, explicit=False, adopt=False, variants=("1", "2"))
        record = book.get("fall")
        assert record is not None and record.variants is not None
        kept = record.variants
        assert kept.versions == ("1", "2") and 0 <= kept.seed < 2**31

        book.resolve("fall", pb, explicit=False, adopt=False)  # naming none keeps them
        book.resolve("fall", pb, explicit=False, adopt=False, variants=("2", "1"))  # same set
        assert book.planned_variants("fall", None) == ("1", "2")
        for other in (("1", "3"), ("1",), ("1", "2", "3")):
            with pytest.raises(VariantsMismatch, match=r"prompt versions 1, 2 .*differs"):
                book.resolve("fall", pb, explicit=False, adopt=False, variants=other)
            with pytest.raises(VariantsMismatch):
                book.planned_variants("fall", other)
        # Even adopting a playbook neither passes other variants nor loses the recorded ones.
        with pytest.raises(VariantsMismatch):
            book.resolve("fall", pb, explicit=True, adopt=True, variants=("3",))
        book.resolve("fall", pb.model_copy(update={"source": "x"}), explicit=True, adopt=True)
        assert (book.get("fall") or record).variants == kept

        book.resolve("plain", pb, explicit=False, adopt=False)
        with pytest.raises(VariantsMismatch, match="without prompt variants"):
            book.resolve("plain", pb, explicit=False, adopt=False, variants=("1", "2"))
        assert (book.get("plain") or record).variants is None
    finally:
        book.close()
    reopened = CampaignBook(tmp_path / "ledger.sqlite")
    try:
        assert (reopened.get("fall") or record).variants == kept
    finally:
        reopened.close()


def test_a_missing_or_mislabelled_version_is_refused_naming_the_file(prompts_dir: Path) -> None:
    check_prompt_variants(("1", "2"), prompts_dir)
    check_prompt_variants(("1",), None)  # the shipped prompts are version 1
    (prompts_dir / "personalize_email@2.md").unlink()
    with pytest.raises(PromptVariantError) as caught:
        check_prompt_variants(("1", "2", "3"), prompts_dir)
    message = str(caught.value)
    assert f"missing {prompts_dir}/personalize_email@2.md" in message
    for name in WRITER_PROMPTS:
        assert f"missing {prompts_dir}/{name}@3.md" in message
    assert "@1.md" not in message and "personalize_linkedin_note@2" not in message

    # A copy that still declares its old version would credit its drafts to the wrong one.
    text = (prompts_dir / "personalize_linkedin_note@2.md").read_text(encoding="utf-8")
    (prompts_dir / "personalize_linkedin_note@2.md").write_text(
        text.replace('version: "2"', 'version: "1"'), encoding="utf-8"
    )
    with pytest.raises(PromptVariantError, match=r"note@2.md declares version '1', not '2'"):
        check_prompt_variants(("2",), prompts_dir)


def test_the_option_is_parsed_strictly() -> None:
    assert parse_prompt_variants("1, 2") == ("1", "2")
    assert parse_prompt_variants("v2.1,b") == ("v2.1", "b")
    for bad in ("", "1,,2", "1,1", "../x", "1 2", "a@b"):
        with pytest.raises(PromptVariantError):
            parse_prompt_variants(bad)


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with ScriptedOpenAIServer(responder=write_from_facts) as model:
        e = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        e.update(
            GTM_DATA_DIR=str(tmp_path / "data"),
            GTM_MODEL_BASE_URL=model.base_url,
            GTM_MODEL="scripted",
            ANONYMIZED_TELEMETRY="False",
            COLUMNS="200",
        )
        yield e


def gtm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_gtm(env, *args)


def test_the_cli_records_shows_and_guards_a_campaigns_variants(
    env: dict[str, str], tmp_path: Path
) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text("\n".join([HEADER, *_rows(3)]) + "\n", encoding="utf-8")

    missing = gtm(env, "run", str(csv), "--campaign", "new", "--prompt-variants", "1,7")
    assert missing.returncode == 2, missing.stderr
    assert "missing prompts/personalize_linkedin_note@7.md" in missing.stderr
    assert "@1.md" not in missing.stderr

    plain = gtm(env, "run", str(csv), "--campaign", "plain", "--limit", "1")
    assert plain.returncode == 0, plain.stderr
    first = gtm(env, "run", str(csv), "--campaign", "fall", "--prompt-variants", "1")
    assert first.returncode == 0, first.stderr
    assert "accounts split among prompt versions 1 (seed" in first.stdout

    status = gtm(env, "status")
    assert status.returncode == 0, status.stderr
    lines = [ln for ln in status.stdout.splitlines() if ln.startswith("prompt variants")]
    assert len(lines) == 1 and re.fullmatch(
        r"prompt variants \(seed \d+\): 1: 3 account\(s\)", lines[0]
    ), lines
    assert "new" not in status.stdout.split()  # the refused campaign was never recorded

    other = gtm(env, "run", str(csv), "--campaign", "fall", "--prompt-variants", "1,2")
    assert other.returncode == 2
    assert "--prompt-variants 1,2 differs" in " ".join(other.stderr.split())
    again = gtm(env, "run", str(csv), "--campaign", "fall")
    assert again.returncode == 0, again.stderr
    assert "accounts split among prompt versions 1 (seed" in again.stdout
    assert "3 account(s) were already done or waiting" in again.stdout
