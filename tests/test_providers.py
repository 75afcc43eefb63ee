"""The real provider clients over real HTTP (and SMTP) against local servers on loopback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller

from gtm.app.doctor import diagnose
from gtm.app.providers import ProviderConfigError, open_providers
from gtm.app.settings import Settings
from gtm.domain.models import Account, Contact
from tests.support.cli import run_gtm
from tests.support.providers import (
    FakeAttio,
    FakeDuxSoup,
    FakeHubSpot,
    FakeSlack,
    SmtpInbox,
)
from tests.support.providers import smtp_server as start_smtp
from tools.alerts import SlackAlerts
from tools.attio import AttioCRM
from tools.channels import ChannelError
from tools.duxsoup import DuxSoupLinkedIn
from tools.http import (
    AuthError,
    HttpClient,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
    ValidationError,
)
from tools.hubspot import HubSpotCRM
from tools.smtp import SmtpEmail

ROOT = Path(__file__).resolve().parents[1]
ACME = Account(account_id="acme.ai", company="Acme", domain="acme.ai")


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    with FakeHubSpot() as fake:
        yield fake


def _client(fake: FakeHubSpot, waits: list[float], **kw: Any) -> HubSpotCRM:
    async def sleep(s: float) -> None:
        waits.append(s)

    http = HttpClient(
        "hubspot",
        fake.base_url,
        headers={"Authorization": f"Bearer {fake.token}"},
        secrets=[fake.token],
        sleep=sleep,
        **kw,
    )
    return HubSpotCRM(http)


# ------------------------------------------------------------------ the HTTP layer


async def test_429_is_retried_after_retry_after(hubspot: FakeHubSpot) -> None:
    waits: list[float] = []
    crm = _client(hubspot, waits)
    hubspot.fail_next += [(429, {"Retry-After": "7"}), (429, {"Retry-After": "2"})]
    assert await crm.find_company("acme.ai") is None
    assert waits == [7.0, 2.0] and len(hubspot.requests) == 3
    # Still throttled after every attempt: a RateLimitedError carrying the hint.
    hubspot.fail_next += [(429, {"Retry-After": "3"})] * 4
    with pytest.raises(RateLimitedError) as info:
        await crm.find_company("acme.ai")
    assert info.value.retry_after == 3.0
    await crm.aclose()


async def test_5xx_retries_reads_but_never_a_create(hubspot: FakeHubSpot) -> None:
    waits: list[float] = []
    crm = _client(hubspot, waits)
    hubspot.fail_next.append((503, {}))
    assert await crm.find_company("acme.ai") is None  # a search is a read: retried
    assert len(waits) == 1
    before = len(hubspot.requests)
    # search (ok) then create → 500: the create may have happened, so it is not retried.
    hubspot.fail_next.clear()
    n = len(hubspot.requests)

    async def create_fails() -> None:
        hubspot.fail_next.append((500, {}))
        await crm._create("companies", {"name": "Acme", "domain": "acme.ai"}, [])

    with pytest.raises(UnavailableError) as info:
        await create_fails()
    assert info.value.maybe_applied and len(hubspot.requests) == n + 1
    assert before <= n
    await crm.aclose()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, ValidationError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (409, ValidationError),
        (422, ValidationError),
    ],
)
async def test_errors_map_to_the_hierarchy(
    hubspot: FakeHubSpot, status: int, error: type[Exception]
) -> None:
    crm = _client(hubspot, [])
    hubspot.fail_next.append((status, {}))
    with pytest.raises(error):
        await crm.find_company("acme.ai")
    assert len(hubspot.requests) == 1  # a client error is never retried
    await crm.aclose()


async def test_a_wrong_token_is_an_auth_error_and_never_logged(
    hubspot: FakeHubSpot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "pat-na1-this-is-secret"
    crm = HubSpotCRM.connect(hubspot.base_url, secret)
    with pytest.raises(AuthError) as info:
        await crm.find_company("acme.ai")
    assert secret not in str(info.value) and secret not in caplog.text
    await crm.aclose()


async def test_the_rate_limiter_spaces_requests(hubspot: FakeHubSpot) -> None:
    crm = _client(hubspot, [], rate=(2, 1.0))
    start = time.monotonic()
    for _ in range(5):
        await crm._http.request("GET", "/crm/v3/objects/companies", idempotent=True)
    assert time.monotonic() - start >= 1.0  # 5 requests at 2 per second cannot be faster
    await crm.aclose()


# ------------------------------------------------------------------ HubSpot shapes


async def test_hubspot_bodies_follow_the_published_shapes(hubspot: FakeHubSpot) -> None:
    crm = _client(hubspot, [])
    co = await crm.upsert_company(ACME)
    person = await crm.upsert_contact(
        Contact(name="Dana Ruiz", email="dana@acme.ai", title="VP Engineering"), co.id
    )
    bodies = [json.loads(r["body"]) for r in hubspot.requests if r["body"]]
    searches = [b for b in bodies if "filterGroups" in b]
    creates = [
        b for b in bodies if "properties" in b and "inputs" not in b and "filterGroups" not in b
    ]
    assert searches and all(
        {"filterGroups", "sorts", "properties", "limit", "after"} <= set(b) for b in searches
    )
    assert creates and all("associations" in b for b in creates)
    contact_create = next(b for b in creates if "email" in b["properties"])
    assert contact_create["associations"][0]["types"][0] == {
        "associationCategory": "HUBSPOT_DEFINED",
        "associationTypeId": 279,
    }
    assert any(
        r["method"] == "PUT"
        and r["path"]
        == f"/crm/v4/objects/contacts/{person.id}/associations/default/companies/{co.id}"
        for r in hubspot.requests
    )
    assert ("notes", "x") not in hubspot.assoc
    await crm.aclose()


async def test_hubspot_reads_owner_lifecycle_and_open_deals(hubspot: FakeHubSpot) -> None:
    crm = _client(hubspot, [])
    await crm.upsert_company(ACME)
    hubspot.set_company("acme.ai", lifecycle_stage="customer", open_deals=1, owner=True)
    co = await crm.find_company("acme.ai")
    assert co is not None and co.is_customer and co.open_deals == 1
    assert co.owner == "owner@yourcompany.example"
    await crm.aclose()


async def test_attio_values_are_arrays_and_companies_join_the_list() -> None:
    with FakeAttio() as fake:
        crm = AttioCRM.connect(fake.base_url, fake.token, list_id="outreach")
        co = await crm.upsert_company(ACME)
        await crm.upsert_contact(Contact(name="Dana Ruiz", email="dana@acme.ai"), co.id)
        puts = [json.loads(r["body"]) for r in fake.requests if r["method"] == "PUT"]
        values = [p["data"]["values"] for p in puts if "values" in p.get("data", {})]
        assert values and all(isinstance(v, list) for vs in values for v in vs.values())
        assert co.id in fake.lists["outreach"]
        asserted = [r for r in fake.requests if r["query"].get("matching_attribute")]
        assert {r["query"]["matching_attribute"] for r in asserted} == {
            "domains",
            "email_addresses",
        }
        await crm.aclose()


# ------------------------------------------------------------------ Dux-Soup


async def test_duxsoup_signs_and_queues_each_key_once(tmp_path: Path) -> None:
    with FakeDuxSoup() as fake:
        dux = DuxSoupLinkedIn.open(fake.base_url, fake.user_id, fake.key, ledger=tmp_path / "d.db")
        url = "https://www.linkedin.com/in/dana-ruiz"
        v = await dux.visit(url, key="k-visit")
        c = await dux.connect(url, "Hi Dana, one question?", key="k-connect")
        again = await dux.connect(url, "changed", key="k-connect")
        m = await dux.message(url, "Thanks for connecting", key="k-msg")
        assert (
            again.provider_id == c.provider_id
            and len({v.provider_id, c.provider_id, m.provider_id}) == 3
        )
        assert [q["command"] for q in fake.queue] == ["visit", "connect", "message"]
        assert fake.queue[1]["params"] == {"profile": url, "messagetext": "Hi Dana, one question?"}
        assert await dux.queue_size() == 3
        await dux.aclose()

        wrong = DuxSoupLinkedIn.open(
            fake.base_url, fake.user_id, "not-the-key", ledger=tmp_path / "w.db"
        )
        with pytest.raises(ChannelError) as info:
            await wrong.visit(url, key="k2")
        assert "403" in str(info.value) and not info.value.retryable
        assert "not-the-key" not in str(info.value)
        await wrong.aclose()


async def test_duxsoup_5xx_is_not_retried(tmp_path: Path) -> None:
    with FakeDuxSoup() as fake:
        dux = DuxSoupLinkedIn.open(fake.base_url, fake.user_id, fake.key, ledger=tmp_path / "d.db")
        fake.fail_next.append((502, {}))
        with pytest.raises(ChannelError) as info:
            await dux.visit("https://www.linkedin.com/in/x", key="k")
        assert len(fake.requests) == 1 and not info.value.retryable  # it may be queued
        await dux.aclose()


# ------------------------------------------------------------------ SMTP


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def smtp_server(tls_cert: tuple[Path, Path]) -> Iterator[tuple[Controller, SmtpInbox]]:
    with start_smtp(*tls_cert) as server:
        yield server


def _smtp(controller: Controller, cert: Path, password: str = "s3cret") -> SmtpEmail:
    return SmtpEmail(
        sender="alex@vectorly.example",
        sender_name="Alex Morgan",
        host="127.0.0.1",
        port=controller.port,
        username="alex",
        password=password,
        ca_file=cert,
        unsubscribe="https://vectorly.example/u/abc",
    )


async def test_smtp_starttls_auth_unsubscribe_and_message_id(
    smtp_server: tuple[Controller, SmtpInbox], tls_cert: tuple[Path, Path]
) -> None:
    controller, inbox = smtp_server
    mail = _smtp(controller, tls_cert[0])
    r = await mail.send(
        to="dana@acme.ai", to_name="Dana Ruiz", subject="Hi", body="One question?", key="k1"
    )
    (raw,) = inbox.messages
    msg = message_from_bytes(raw)
    assert msg["Message-ID"] == r.provider_id and r.provider_id.endswith("@vectorly.example>")
    assert msg["List-Unsubscribe"] == "<https://vectorly.example/u/abc>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The same key always yields the same Message-ID.
    r2 = await mail.send(to="dana@acme.ai", to_name="Dana Ruiz", subject="Hi", body="x", key="k1")
    assert r2.provider_id == r.provider_id
    assert "NOOP" in await mail.check()
    with pytest.raises(ChannelError, match="login refused"):
        await _smtp(controller, tls_cert[0], password="wrong").send(
            to="dana@acme.ai", to_name="Dana", subject="s", body="b", key="k3"
        )


# ------------------------------------------------------------------ Slack


async def test_slack_alerts_and_a_check_that_posts_nothing() -> None:
    with FakeSlack() as fake:
        slack = SlackAlerts.open(fake.webhook_url)
        await slack.alert("escalation", "VP replied at Acme")
        assert fake.posted == [":rotating_light: *escalation*: VP replied at Acme"]
        assert "nothing posted" in await slack.check() and len(fake.posted) == 1
        await slack.aclose()
        bad = SlackAlerts.open(fake.base_url + "/services/T000/B000/wrong-secret")
        with pytest.raises(NotFoundError) as info:
            await bad.check()
        assert "wrong-secret" not in str(info.value)  # the webhook path is the secret
        await bad.aclose()


# ------------------------------------------------------------------ gtm doctor


def _doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_gtm(env, "doctor", timeout=120)


async def test_doctor_checks_what_the_factory_opens_and_names_missing_settings(
    tmp_path: Path,
) -> None:
    s = Settings(data_dir=tmp_path, crm="attio", email="smtp")
    with pytest.raises(ProviderConfigError, match="set GTM_ATTIO_TOKEN, GTM_SMTP_HOST "):
        async with open_providers(s):
            pass
    findings = await diagnose(s)
    assert [(f.detail, f.fix) for f in findings if f.component == "settings"] == [
        ("GTM_ATTIO_TOKEN is not set", "export GTM_ATTIO_TOKEN=..."),
        ("GTM_SMTP_HOST is not set", "export GTM_SMTP_HOST=..."),
    ]
    # A seam without its settings is not reached; the others are opened as a run opens them.
    checked = [(f.component, f.ok, f.detail) for f in findings if ": " in f.component]
    assert checked == [
        ("linkedin: local", True, f"action log in {tmp_path}"),
        ("alerts: local", True, f"alerts.jsonl in {tmp_path}"),
    ]


def test_doctor_reaches_every_provider_and_says_what_to_fix(tmp_path: Path) -> None:
    with FakeHubSpot() as hub, FakeDuxSoup() as dux, FakeSlack() as slack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        env.update(
            COLUMNS="200",
            GTM_DATA_DIR=str(tmp_path),
            GTM_CRM="hubspot",
            GTM_HUBSPOT_BASE_URL=hub.base_url,
            GTM_HUBSPOT_TOKEN=hub.token,
            GTM_LINKEDIN="duxsoup",
            GTM_DUXSOUP_BASE_URL=dux.base_url,
            GTM_DUXSOUP_USER_ID=dux.user_id,
            GTM_DUXSOUP_KEY=dux.key,
            GTM_SLACK_WEBHOOK_URL=slack.webhook_url,
        )
        ok = _doctor(env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "scopes ok" in ok.stdout and "97/100" in ok.stdout
        assert "0 action(s) in the queue" in ok.stdout and "nothing posted" in ok.stdout
        assert dux.queue == [] and slack.posted == []  # nothing was sent

        hub.scopes = [s for s in hub.scopes if "deals" not in s]
        bad = _doctor({**env, "GTM_DUXSOUP_KEY": "wrong", "GTM_EMAIL": "smtp"})
    assert bad.returncode == 1
    assert "crm.objects.deals.read" in bad.stdout
    assert "GTM_SMTP_HOST is not set" in bad.stdout
    assert "403" in bad.stdout and "remote-control key" in bad.stdout
    assert hub.token not in bad.stdout + bad.stderr and dux.key not in bad.stdout


# ------------------------------------------------------------------ the pipeline on real clients


def test_a_campaign_runs_on_hubspot_and_duxsoup_chosen_by_settings(tmp_path: Path) -> None:
    """`gtm run` then `gtm approve`, with HubSpot and Dux-Soup configured through the
    environment: the connect is queued (signed) and both actions are logged as HubSpot notes."""
    from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

    with (
        ScriptedOpenAIServer(responder=write_from_facts) as model,
        FakeHubSpot() as hub,
        FakeDuxSoup() as dux,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        # Pacing (working hours, gaps) is tested on its own; here the clock is the real one.
        playbook = yaml.safe_load(
            (Path(__file__).parents[1] / "gtm" / "domain" / "playbook.default.yaml").read_text(
                encoding="utf-8"
            )
        )
        playbook["pacing"]["applies_to"] = "none"
        (tmp_path / "playbook.yaml").write_text(yaml.safe_dump(playbook), encoding="utf-8")
        env.update(
            GTM_PLAYBOOK=str(tmp_path / "playbook.yaml"),
            GTM_DATA_DIR=str(tmp_path),
            GTM_MODEL_BASE_URL=model.base_url,
            GTM_MODEL="scripted",
            GTM_CRM="hubspot",
            GTM_HUBSPOT_BASE_URL=hub.base_url,
            GTM_HUBSPOT_TOKEN=hub.token,
            GTM_LINKEDIN="duxsoup",
            GTM_DUXSOUP_BASE_URL=dux.base_url,
            GTM_DUXSOUP_USER_ID=dux.user_id,
            GTM_DUXSOUP_KEY=dux.key,
            ANONYMIZED_TELEMETRY="False",
        )

        def gtm(*args: str) -> subprocess.CompletedProcess[str]:
            return run_gtm(env, *args)

        run = gtm("run", str(ROOT / "examples" / "accounts.csv"), "--campaign", "c", "--limit", "1")
        assert run.returncode == 0, run.stdout + run.stderr
        ok = gtm("approve", "1")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        again = gtm("approve", "1")
        assert again.returncode == 1 and "already decided" in again.stderr
    assert [q["command"] for q in dux.queue] == ["visit", "connect"]
    assert dux.queue[1]["params"]["messagetext"]
    notes = [p["hs_note_body"] for p in hub.objects["notes"].values()]
    assert len(notes) == 2 and all("gtm ref gtm" in n for n in notes)
    (company,) = hub.objects["companies"].values()
    assert company["domain"] == "quillcode.dev"
    assert hub.token not in run.stdout + run.stderr + ok.stdout + ok.stderr
