"""The qualification card through the real graph: research fills it, the checkpoint keeps it,
`gtm inbox` and the web draft page show it, and the runner takes accounts in ranked order."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents.qualify import rank_accounts
from gtm.app.accounts import load_accounts
from gtm.app.runner import thread_values
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.playbook import load_playbook
from gtm.domain.qualification import STATE_FIELD, Qualification
from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.web import WEB_ACCOUNTS, seed

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, model_server: ScriptedOpenAIServer) -> Path:
    d = tmp_path_factory.mktemp("qualify-wiring")
    seed(d, model_server.base_url, [("spring", "linkedin", WEB_ACCOUNTS)])
    return d


def test_research_fills_the_card_and_the_checkpoint_keeps_it(data: Path) -> None:
    async def go() -> dict[str, Qualification]:
        async with open_workspace(Settings(data_dir=data), with_model=False) as rt:
            out = {}
            for row in rt.ledger.rows(status="waiting_for_approval"):
                values = await thread_values(rt, row.thread_id)
                card = values[STATE_FIELD]
                assert isinstance(card, Qualification)  # revived, not a dict
                assert card.fact_ids() <= {f.id for f in values["facts"]}
                out[row.company] = card
            return out

    cards = asyncio.run(go())
    assert cards, "no waiting draft"
    briefcase = cards["Briefcase Labs"]
    assert briefcase.element("economic_buyer").known  # Chief Technology Officer
    assert briefcase.element("decision_criteria").known  # SOC 2


def test_gtm_inbox_shows_the_card(data: Path) -> None:
    from gtm.cli import app

    result = CliRunner().invoke(
        app, ["--data-dir", str(data), "inbox", "--all"], env={"COLUMNS": "200", "NO_COLOR": "1"}
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"Qualification \(score \d+ of 17\)", result.output)
    assert "Economic buyer: " in result.output


def test_the_runner_takes_tier_1_and_strong_signals_first() -> None:
    accounts = load_accounts(WEB_ACCOUNTS).accounts
    ranked = rank_accounts(accounts, load_playbook())
    tiers = [load_playbook().tier_of(a) for a in ranked]
    numbers = [t.tier if t else 99 for t in tiers]
    assert numbers == sorted(numbers)
