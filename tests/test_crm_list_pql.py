"""Product signals from the CRM (issue 18, point 4): a campaign from a HubSpot or Attio list reads
the company properties the playbook's `crm_lists.pql_properties` names, and the qualification
card reads their figures against its thresholds, each backed by a fact naming the record and the
property. Also: held people are recorded only for accounts the campaign holds no thread for,
whichever of the account's people that thread is for (point 7, with several people per account).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.qualify import list_card
from gtm.app.crm_lists import CrmList, Held, ListSource, load_crm_list, record_held
from gtm.app.ledger import Ledger
from gtm.domain.crm_lists import CrmName
from gtm.domain.models import Account, Contact
from gtm.domain.playbook import Playbook, PlaybookError, load_playbook
from gtm.domain.qualification import UNKNOWN
from gtm.domain.threads import thread_id_for
from tests.support.cli import run_gtm
from tests.support.providers import FakeAttio, FakeHubSpot
from tests.test_crm_lists import _attio, _hubspot

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime.now(UTC)
PLAYBOOK = load_playbook()
PROPS = {
    "signups": "product_signups",
    "active_users": "weekly_active_users",
    "usage_growth": "usage_growth_pct",
}


def _with(props: dict[str, dict[str, str]]) -> Playbook:
    section = PLAYBOOK.crm_lists.model_copy(update={"pql_properties": props})
    return PLAYBOOK.model_copy(update={"crm_lists": section})


def _seed_hubspot(hub: FakeHubSpot) -> tuple[str, str]:
    """Quillcode with 120 sign-ups (over the bar of 3), 4 weekly active users (under 10) and a
    growth figure nobody wrote as a number; one contact to write to. HubSpot gives every
    property value as a string."""
    quill = hub.set_company("quillcode.dev")
    hub.objects["companies"][quill].update(
        name="Quillcode",
        industry="AI coding assistant",
        product_signups="120",
        weekly_active_users="4",
        usage_growth_pct="lots",
    )
    dana = hub.add_contact(
        quill,
        firstname="Dana",
        lastname="Ruiz",
        jobtitle="VP Engineering",
        email="dana@quillcode.dev",
        hs_linkedin_url="https://www.linkedin.com/in/dana-ruiz",
    )
    return quill, hub.add_list("0-1", [dana])


def _seed_attio(fake: FakeAttio) -> tuple[str, str]:
    """The same company in Attio: numbers come back as JSON numbers, text as text."""
    quill = fake.set_company("quillcode.dev")
    fake.records["companies"][quill].update(
        name=[{"value": "Quillcode"}], categories=[{"option": {"title": "AI coding assistant"}}]
    )
    fake.set_attribute("companies", quill, "product_signups", "number", value=120.0)
    fake.set_attribute("companies", quill, "weekly_active_users", "number", value=4)
    fake.set_attribute("companies", quill, "usage_growth_pct", "text", value="lots")
    dana = fake.add_person(
        quill,
        name=[{"full_name": "Dana Ruiz"}],
        job_title=[{"value": "VP Engineering"}],
        email_addresses=[{"email_address": "dana@quillcode.dev"}],
        linkedin=[{"value": "https://www.linkedin.com/in/dana-ruiz"}],
    )
    fake.add_list("q1", "people", [dana])
    return quill, "q1"


async def _load(provider: CrmName, playbook: Playbook) -> tuple[Account, str, list[dict[str, Any]]]:
    """The one account of the seeded list, the company's record id, and the requests made."""
    fake: Any = FakeHubSpot() if provider == "hubspot" else FakeAttio()
    with fake:
        if provider == "hubspot":
            company, lid = _seed_hubspot(fake)
            crm: Any = _hubspot(fake)
        else:
            company, lid = _seed_attio(fake)
            crm = _attio(fake)
        try:
            got = await load_crm_list(
                crm, ListSource(provider, lid), playbook, configured=provider, now=NOW
            )
        finally:
            await crm.aclose()
        requests = list(fake.requests)
    assert not got.errors and not got.held
    (account,) = got.accounts
    return account, company, requests


@pytest.mark.parametrize(("provider", "where"), [("hubspot", "property"), ("attio", "attribute")])
async def test_company_properties_become_signal_facts_the_card_reads(
    provider: CrmName, where: str
) -> None:
    account, company, _ = await _load(provider, _with({provider: PROPS}))
    signals = [(f.text, f.source, f.kind) for f in account.facts]
    record = f"{provider} company {company} {where}"
    assert signals == [
        ("Quillcode: sign-ups: 120", f"{record} product_signups", "signal"),
        ("Quillcode: active users: 4", f"{record} weekly_active_users", "signal"),
        ("Quillcode: usage growth: lots", f"{record} usage_growth_pct", "signal"),
    ]
    card = list_card(account, PLAYBOOK)
    by = {s.name: s for s in card.pql}
    assert {n: (s.value, s.met) for n, s in by.items()} == {
        "signups": ("120", True),
        "active_users": ("4", False),
        # a value that is no figure stays a fact, and the signal stays unknown, never met
        "usage_growth": (UNKNOWN, False),
    }
    # the card's evidence names the CRM record and property it came from
    assert [(ev.matched, ev.source) for ev in by["signups"].evidence] == [
        ("sign-ups: 120", f"{record} product_signups")
    ]


async def test_hubspot_reads_the_properties_only_when_the_playbook_names_them() -> None:
    # Without the setting, the properties are not asked for, and HubSpot's batch read returns
    # only what it is asked for: no signal fact, and the card's signals stay unknown.
    plain, _, asked = await _load("hubspot", PLAYBOOK)
    assert plain.facts == ()
    assert {s.value for s in list_card(plain, PLAYBOOK).pql} == {UNKNOWN}
    named, _, asked_named = await _load("hubspot", _with({"hubspot": PROPS}))

    def company_props(requests: list[dict[str, Any]]) -> list[str]:
        (read,) = [r for r in requests if r["path"] == "/crm/v3/objects/companies/batch/read"]
        props: list[str] = json.loads(read["body"])["properties"]
        return props

    assert not set(PROPS.values()) & set(company_props(asked))
    assert set(PROPS.values()) <= set(company_props(asked_named))
    # Attio's setting does not make HubSpot read anything.
    other, _, _ = await _load("hubspot", _with({"attio": PROPS}))
    assert other.facts == ()


async def test_attio_without_the_setting_and_with_a_partial_one() -> None:
    plain, _, _ = await _load("attio", PLAYBOOK)
    assert plain.facts == ()
    some, company, _ = await _load(
        "attio", _with({"attio": {"active_users": "weekly_active_users"}})
    )
    assert [(f.text, f.source) for f in some.facts] == [
        ("Quillcode: active users: 4", f"attio company {company} attribute weekly_active_users")
    ]


async def test_attio_select_currency_and_empty_values() -> None:
    with FakeAttio() as fake:
        quill, lid = _seed_attio(fake)
        fake.set_attribute("companies", quill, "product_signups", "select", option={"title": "50"})
        fake.set_attribute("companies", quill, "usage_growth_pct", "currency", currency_value=35.5)
        fake.records["companies"][quill]["weekly_active_users"] = []  # no value
        crm = _attio(fake)
        try:
            got = await load_crm_list(
                crm, ListSource("attio", lid), _with({"attio": PROPS}), configured="attio", now=NOW
            )
        finally:
            await crm.aclose()
    (account,) = got.accounts
    assert [f.text for f in account.facts] == [
        "Quillcode: sign-ups: 50",
        "Quillcode: usage growth: 35.5",
    ]


# ------------------------------------------------------------------ the playbook setting


def _playbook_file(tmp_path: Path, pql: Any) -> Path:
    data = yaml.safe_load(
        (ROOT / "gtm" / "domain" / "playbook.default.yaml").read_text(encoding="utf-8")
    )
    data["crm_lists"]["pql_properties"] = pql
    path = tmp_path / "playbook.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_signals_are_the_list_columns() -> None:
    from gtm.app.list_columns import PQL
    from gtm.domain.crm_lists import PQL_SIGNALS

    assert tuple(PQL) == PQL_SIGNALS


def test_the_default_playbook_reads_no_property() -> None:
    assert PLAYBOOK.crm_lists.pql_properties == {}
    assert PLAYBOOK.crm_lists.pql_for("hubspot") == {} == PLAYBOOK.crm_lists.pql_for("attio")


def test_the_setting_loads_in_signal_order(tmp_path: Path) -> None:
    pb = load_playbook(
        _playbook_file(
            tmp_path, {"hubspot": {"usage_growth": "growth", "signups": "product_signups"}}
        )
    )
    assert list(pb.crm_lists.pql_for("hubspot").items()) == [
        ("signups", "product_signups"),
        ("usage_growth", "growth"),
    ]


@pytest.mark.parametrize(
    ("pql", "said"),
    [
        (
            {"hubspot": {"sign_ups": "product_signups"}},
            "crm_lists.pql_properties: Value error, hubspot: unknown signal(s) 'sign_ups'; "
            "the signals are signups, active_users, usage_growth",
        ),
        ({"salesforce": {"signups": "x"}}, "crm_lists.pql_properties.salesforce"),
        (
            {"attio": {"signups": "product signups"}},
            "attio.signups: 'product signups' is not a property name",
        ),
        ({"attio": {"signups": 12}}, "crm_lists.pql_properties.attio.signups"),
    ],
)
def test_a_bad_setting_is_refused_naming_it(tmp_path: Path, pql: Any, said: str) -> None:
    with pytest.raises(PlaybookError) as exc:
        load_playbook(_playbook_file(tmp_path, pql))
    assert said in str(exc.value)


# ------------------------------------------------------------------ held, with several people


def _account(domain: str) -> Account:
    person = Contact(name="Theo Marchetti", email=f"theo@{domain}")
    return Account(account_id=domain, company=domain, domain=domain, contacts=(person,))


def test_held_people_are_not_recorded_over_any_thread_of_the_account(tmp_path: Path) -> None:
    """The list is screened before the campaign's lock is taken; by the time the held people
    are recorded, another run may have started the account. Its threads, the first person's or
    a later one's (`#2`), are left as they are; an account without any is recorded skipped."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        second, first, fresh = (_account(d) for d in ("second.io", "first.io", "fresh.io"))
        ledger.ensure("q1", second, "email", slot=1)
        ledger.update(thread_id_for("q1", "second.io", 1), status="waiting_for_approval")
        ledger.ensure("q1", first, "email")
        ledger.update(thread_id_for("q1", "first.io"), status="waiting_for_approval")
        listing = CrmList(
            source="hubspot:list/7",
            held=[
                Held("hubspot:list/7", f"contact {i}", a, "Theo Marchetti", "recent_activity", "x")
                for i, a in enumerate((second, first, fresh))
            ],
        )
        assert record_held(ledger, "q1", "email", listing) == {"recent_activity": 1}
        rows = {r.thread_id: (r.status, r.skip_reason) for r in ledger.rows(campaign="q1")}
    finally:
        ledger.close()
    assert rows == {
        "q1:second.io#2": ("waiting_for_approval", None),
        "q1:first.io": ("waiting_for_approval", None),
        "q1:fresh.io": ("skipped", "recent_activity"),
    }


# ------------------------------------------------------------------ gtm run --from, end to end


def card_after_run(tmp_path: Path, provider: str, fake: Any, model_url: str, *source: str) -> str:
    """`gtm run SOURCE --campaign q1` on the CRM test server `fake`, with a playbook naming
    PROPS for `provider` and no pacing, then `gtm inbox`: the inbox text, whitespace squashed,
    once the one account waits for approval."""
    path = _playbook_file(tmp_path, {provider: PROPS})
    data = yaml.safe_load(path.read_text("utf-8"))
    data["pacing"]["applies_to"] = "none"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    prefix = f"GTM_{provider.upper()}_"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    env.update(
        COLUMNS="200",
        GTM_PLAYBOOK=str(path),
        GTM_DATA_DIR=str(tmp_path / "data"),
        GTM_MODEL_BASE_URL=model_url,
        GTM_MODEL="scripted",
        GTM_CRM=provider,
        ANONYMIZED_TELEMETRY="False",
        **{f"{prefix}BASE_URL": fake.base_url, f"{prefix}TOKEN": fake.token},
    )

    def gtm(*args: str) -> subprocess.CompletedProcess[str]:
        return run_gtm(env, *args, timeout=240)

    run = gtm("run", *source, "--campaign", "q1")
    assert run.returncode == 0, run.stdout + run.stderr
    inbox = gtm("inbox", "--campaign", "q1")
    assert inbox.returncode == 0, inbox.stdout + inbox.stderr
    with sqlite3.connect(tmp_path / "data" / "ledger.sqlite") as db:
        threads = db.execute("SELECT account_id, status, detail FROM threads").fetchall()
    assert [t[:2] for t in threads] == [("quillcode.dev", "waiting_for_approval")], threads
    return " ".join(inbox.stdout.split())


@pytest.mark.parametrize("provider", ["hubspot", "attio"])
def test_gtm_run_from_a_crm_list_shows_the_signals_on_the_card(
    tmp_path: Path, provider: str
) -> None:
    from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

    fake: Any = FakeHubSpot() if provider == "hubspot" else FakeAttio()
    with ScriptedOpenAIServer(responder=write_from_facts) as model, fake:
        _, lid = _seed_hubspot(fake) if provider == "hubspot" else _seed_attio(fake)
        shown = card_after_run(
            tmp_path, provider, fake, model.base_url, "--from", f"{provider}:list/{lid}"
        )
    assert "sign-ups: 120 (meets the bar of 3) [f" in shown, shown
    assert "active users: 4 (below the bar of 10) [f" in shown, shown
    assert "usage growth: unknown" in shown, shown
