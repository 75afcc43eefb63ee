"""Product signals from the CRM in a CSV campaign (issue 18, point 4): with HubSpot or Attio as
the CRM, research reads the company properties the playbook's `crm_lists.pql_properties` names
from the record it finds, worded as a list's PQL column, each naming the record and property, and
the qualification card reads them against its thresholds. Nothing named: nothing more asked of
the CRM, nothing changes. The local CRM holds no such properties and is untouched.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from langgraph.runtime import Runtime
from pydantic import SecretStr

from agents.research import research
from agents.state import State
from gtm.app.accounts import load_accounts
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.crm_lists import CrmName
from gtm.domain.models import Account, Fact
from gtm.domain.playbook import Playbook, load_playbook
from gtm.domain.qualification import UNKNOWN
from tests.support.providers import FakeAttio, FakeHubSpot
from tests.test_crm_list_pql import PROPS, card_after_run
from tools.crm import CompanySignals
from tools.hubspot import COMPANY_PROPS
from tools.local_crm import LocalCRM

ROOT = Path(__file__).resolve().parents[1]
_RUNS = itertools.count()
PLAYBOOK = load_playbook()
WHERE = {"hubspot": "property", "attio": "attribute"}
HEADER = "company,domain,segment,contact_name,contact_title,email,linkedin_url"
ROW = (
    "Quillcode,quillcode.dev,AI coding assistant,Dana Ruiz,VP Engineering,dana@quillcode.dev,"
    "https://www.linkedin.com/in/dana-ruiz"
)


def _with(props: dict[CrmName, dict[str, str]]) -> Playbook:
    section = PLAYBOOK.crm_lists.model_copy(update={"pql_properties": props})
    return PLAYBOOK.model_copy(update={"crm_lists": section})


def _seed(provider: CrmName, fake: Any) -> str:
    """Quillcode with 120 sign-ups (over the bar of 3), 4 weekly active users (under 10) and a
    growth figure nobody wrote as a number, in each CRM's own value shape: HubSpot gives every
    property as a string, Attio every attribute as an array of typed values."""
    if provider == "hubspot":
        quill: str = fake.set_company("quillcode.dev")
        fake.objects["companies"][quill].update(
            name="Quillcode",
            product_signups="120",
            weekly_active_users="4",
            usage_growth_pct="lots",
        )
        return quill
    quill = fake.set_company("quillcode.dev")
    fake.records["companies"][quill]["name"] = [{"value": "Quillcode"}]
    fake.set_attribute("companies", quill, "product_signups", "number", value=120.0)
    fake.set_attribute("companies", quill, "weekly_active_users", "number", value=4)
    fake.set_attribute("companies", quill, "usage_growth_pct", "text", value="lots")
    return quill


def _settings(provider: CrmName, fake: Any, data: Path) -> Settings:
    if provider == "hubspot":
        return Settings(
            data_dir=data,
            crm="hubspot",
            hubspot_base_url=fake.base_url,
            hubspot_token=SecretStr(fake.token),
        )
    return Settings(
        data_dir=data, crm="attio", attio_base_url=fake.base_url, attio_token=SecretStr(fake.token)
    )


def _csv_account(tmp_path: Path, header: str = HEADER, row: str = ROW) -> Account:
    """The account a CSV campaign runs, read by the same loader `gtm run accounts.csv` uses."""
    path = tmp_path / "accounts.csv"
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")
    listing = load_accounts(path)
    assert not listing.errors
    (account,) = listing.accounts
    return account


async def _research(
    provider: CrmName, playbook: Playbook, account: Account, tmp_path: Path
) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
    """Research's output for the account, the company's record id, and the CRM requests made
    by research alone."""
    fake: Any = FakeHubSpot() if provider == "hubspot" else FakeAttio()
    with fake:
        company = _seed(provider, fake)
        settings = _settings(provider, fake, tmp_path / f"data-{next(_RUNS)}")
        async with open_workspace(settings, with_model=False, playbook=playbook) as rt:
            state = State(
                campaign="c1", channel="email", account=account, contact=account.contacts[0]
            )
            before = len(fake.requests)
            out = await research(state, Runtime(context=rt.deps))
            asked = list(fake.requests[before:])
    return out, company, asked


def _signals(facts: list[Fact]) -> list[tuple[str, str]]:
    return [(f.text, f.source) for f in facts if f.kind == "signal"]


@pytest.mark.parametrize("provider", ["hubspot", "attio"])
async def test_a_csv_campaign_reads_the_named_properties_into_the_card(
    provider: CrmName, tmp_path: Path
) -> None:
    account = _csv_account(tmp_path)
    out, company, _ = await _research(provider, _with({provider: PROPS}), account, tmp_path)
    record = f"{provider} company {company} {WHERE[provider]}"
    assert _signals(out["facts"]) == [
        ("Quillcode: sign-ups: 120", f"{record} product_signups"),
        ("Quillcode: active users: 4", f"{record} weekly_active_users"),
        ("Quillcode: usage growth: lots", f"{record} usage_growth_pct"),
    ]
    card = out["qualification"]
    by = {s.name: s for s in card.pql}
    assert {n: (s.value, s.met) for n, s in by.items()} == {
        "signups": ("120", True),
        "active_users": ("4", False),
        "usage_growth": (UNKNOWN, False),  # a value that is no figure backs no signal
    }
    ids = {f.id: f.source for f in out["facts"]}
    assert [ids[ev.fact_id] for ev in by["signups"].evidence] == [f"{record} product_signups"]
    assert [ids[ev.fact_id] for ev in by["active_users"].evidence] == [
        f"{record} weekly_active_users"
    ]


@pytest.mark.parametrize("provider", ["hubspot", "attio"])
async def test_without_the_setting_nothing_more_is_asked_and_nothing_changes(
    provider: CrmName, tmp_path: Path
) -> None:
    account = _csv_account(tmp_path)
    plain, _, asked_plain = await _research(provider, PLAYBOOK, account, tmp_path)
    assert _signals(plain["facts"]) == []
    assert {s.value for s in plain["qualification"].pql} == {UNKNOWN}
    # another CRM's entry is not this one's
    other: CrmName = "attio" if provider == "hubspot" else "hubspot"
    elsewhere, _, asked_other = await _research(provider, _with({other: PROPS}), account, tmp_path)
    assert elsewhere["facts"] == plain["facts"]
    named, _, asked_named = await _research(provider, _with({provider: PROPS}), account, tmp_path)

    def calls(asked: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in asked]

    # the same requests either way: the properties ride on the lookup research already makes
    assert calls(asked_plain) == calls(asked_other) == calls(asked_named)
    if provider == "hubspot":

        def searched(asked: list[dict[str, Any]]) -> list[str]:
            (search,) = [r for r in asked if r["path"] == "/crm/v3/objects/companies/search"]
            props: list[str] = json.loads(search["body"])["properties"]
            return props

        assert searched(asked_plain) == COMPANY_PROPS == searched(asked_other)
        assert searched(asked_named) == [*COMPANY_PROPS, *PROPS.values()]


@pytest.mark.parametrize("provider", ["hubspot", "attio"])
async def test_a_list_column_and_a_crm_property_for_one_signal_are_both_kept(
    provider: CrmName, tmp_path: Path
) -> None:
    """The card shows evidence: the list's own figure and the CRM's, each with its source; the
    list's, read first, is the one the card reads."""
    account = _csv_account(tmp_path, f"{HEADER},Sign-ups", f"{ROW},2")
    pb = _with({provider: {"signups": "product_signups"}})
    out, company, _ = await _research(provider, pb, account, tmp_path)
    assert _signals(out["facts"]) == [
        ("Quillcode: sign-ups: 2", "accounts.csv:2:Sign-ups"),
        (
            "Quillcode: sign-ups: 120",
            f"{provider} company {company} {WHERE[provider]} product_signups",
        ),
    ]
    (signups,) = [s for s in out["qualification"].pql if s.name == "signups"]
    assert (signups.value, signups.met) == ("2", False)


async def test_the_local_crm_is_unchanged(tmp_path: Path) -> None:
    """The local twin has no company properties: the setting reads nothing from it, and research
    gives what it gave without the setting."""
    account = _csv_account(tmp_path)
    state = State(campaign="c1", channel="email", account=account, contact=account.contacts[0])
    got = []
    for i, pb in enumerate((PLAYBOOK, _with({"hubspot": PROPS, "attio": PROPS}))):
        settings = Settings(data_dir=tmp_path / f"local-{i}")
        async with open_workspace(settings, with_model=False, playbook=pb) as rt:
            assert isinstance(rt.deps.crm, LocalCRM)
            assert not isinstance(rt.deps.crm, CompanySignals)
            await rt.deps.crm.upsert_company(account)
            company = await rt.deps.crm.find_company(account.domain)
            assert company is not None and company.pql == ()
            got.append(await research(state, Runtime(context=rt.deps)))
    plain, named = got
    assert _signals(named["facts"]) == []
    assert [(f.text, f.source) for f in named["facts"]] == [
        (f.text, f.source) for f in plain["facts"]
    ]
    assert named["qualification"] == plain["qualification"]


def test_the_crm_clients_can_hold_signals() -> None:
    from tools.attio import AttioCRM
    from tools.hubspot import HubSpotCRM

    assert issubclass(HubSpotCRM, CompanySignals) and issubclass(AttioCRM, CompanySignals)


# ------------------------------------------------------------------ gtm run accounts.csv


@pytest.mark.parametrize("provider", ["hubspot", "attio"])
def test_gtm_run_of_a_csv_shows_the_crm_signals_on_the_card(
    tmp_path: Path, provider: CrmName
) -> None:
    from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

    fake: Any = FakeHubSpot() if provider == "hubspot" else FakeAttio()
    with ScriptedOpenAIServer(responder=write_from_facts) as model, fake:
        _seed(provider, fake)
        (tmp_path / "accounts.csv").write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
        shown = card_after_run(
            tmp_path, provider, fake, model.base_url, str(tmp_path / "accounts.csv")
        )
    assert "sign-ups: 120 (meets the bar of 3) [f" in shown, shown
    assert "active users: 4 (below the bar of 10) [f" in shown, shown
    assert "usage growth: unknown" in shown, shown
