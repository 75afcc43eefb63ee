"""Secrets: a campaign on every real provider with recognisable fake credentials, then a scan of
everything it left behind (logs, checkpoints, memory, outboxes, ledgers, alerts) and everything
it printed. No credential may appear, in clear or base64."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.support.cli import run_gtm
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tests.support.providers import FakeDuxSoup, FakeHubSpot, FakeSlack, smtp_server
from tests.test_providers import tls_cert  # noqa: F401 (module fixture)

ROOT = Path(__file__).resolve().parents[1]
HUBSPOT = "pat-na1-SECRET-hubspot-7c1f0d"
DUX = "SECRET-duxsoup-key-41b9e2"
SMTP = "SECRET-smtp-pass-93d2aa"
MODEL = "sk-SECRET-model-5e0a77"
HEADER = "company,domain,segment,description,contact_name,contact_title,linkedin_url,email,signals"


def _variants(secret: str) -> list[bytes]:
    raw = secret.encode()
    return [raw, base64.b64encode(raw), base64.b64encode(b"\0alex\0" + raw)]


def test_no_credential_is_left_in_any_file_or_output(
    tmp_path: Path,
    tls_cert: tuple[Path, Path],  # noqa: F811
) -> None:
    li_csv, mail_csv = tmp_path / "li.csv", tmp_path / "mail.csv"
    li_csv.write_text(
        f"{HEADER}\nQuillcode,quillcode.dev,AI coding assistant,Builds an AI coding assistant.,"
        "Dana Ruiz,VP Engineering,https://www.linkedin.com/in/dana-ruiz,dana@quillcode.dev,"
        "Hiring 4 ML infrastructure engineers;3 sign-ups from this domain in the last 30 days\n",
        encoding="utf-8",
    )
    mail_csv.write_text(
        f"{HEADER}\nLexora,lexora.law,legal tech,Contract review for law firms.,Omar Haddad,"
        "Head of Engineering,https://www.linkedin.com/in/omar-haddad,omar@lexora.law,"
        "Raised a Series B in June 2026;Opened GitHub issue #77 on our repo\n",
        encoding="utf-8",
    )
    outputs: list[str] = []
    with (
        smtp_server(*tls_cert, password=SMTP) as (smtp, inbox),
        ScriptedOpenAIServer(responder=write_from_facts) as model,
        FakeHubSpot(token=HUBSPOT) as hub,
        FakeDuxSoup(key=DUX) as dux,
        FakeSlack() as slack,
    ):
        playbook = tmp_path / "playbook.yaml"
        text = (ROOT / "gtm" / "domain" / "playbook.default.yaml").read_text(encoding="utf-8")
        playbook.write_text(text.replace("applies_to: live", "applies_to: none"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        env.update(
            GTM_DATA_DIR=str(tmp_path / "data"),
            GTM_PLAYBOOK=str(playbook),
            GTM_MODEL_BASE_URL=model.base_url,
            GTM_MODEL="scripted",
            GTM_MODEL_API_KEY=MODEL,
            GTM_CRM="hubspot",
            GTM_HUBSPOT_BASE_URL=hub.base_url,
            GTM_HUBSPOT_TOKEN=HUBSPOT,
            GTM_LINKEDIN="duxsoup",
            GTM_DUXSOUP_BASE_URL=dux.base_url,
            GTM_DUXSOUP_USER_ID=dux.user_id,
            GTM_DUXSOUP_KEY=DUX,
            GTM_EMAIL="smtp",
            GTM_SMTP_HOST="127.0.0.1",
            GTM_SMTP_PORT=str(smtp.port),
            GTM_SMTP_USERNAME="alex",
            GTM_SMTP_PASSWORD=SMTP,
            GTM_SMTP_CA_FILE=str(tls_cert[0]),
            GTM_SLACK_WEBHOOK_URL=slack.webhook_url,
            ANONYMIZED_TELEMETRY="False",
        )

        def gtm(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
            done = run_gtm({**env, **extra}, *args)
            outputs.append(done.stdout + done.stderr)
            return done

        assert gtm("run", str(li_csv), "--campaign", "li").returncode == 0, outputs[-1]
        assert gtm("approve", "1").returncode == 0, outputs[-1]
        run = gtm("run", str(mail_csv), "--campaign", "mail", "--channel", "email")
        assert run.returncode == 0, outputs[-1]
        assert gtm("approve", "2").returncode == 0, outputs[-1]
        assert gtm("status").returncode == 0
        assert gtm("doctor").returncode == 0, outputs[-1]
        # Failures print provider errors: they must not carry the credential either.
        hub.fail_next.append((500, {}))
        gtm("doctor", GTM_DUXSOUP_KEY=DUX + "-wrong")
        hub.fail_next.clear()
        # The credentials were really used (so the scan below means something).
        assert any(HUBSPOT in h.get("authorization", "") for h in _headers(hub.requests))
        assert dux.queue and len(inbox.messages) == 1 and slack.requests
        assert any(MODEL in h.get("authorization", "") for h in model.headers)

    found = []
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            found += [f"{path}: {v!r}" for v in _all_variants() if v in blob]
    for text_out in outputs:
        found += [f"output: {v!r}" for v in _all_variants() if v in text_out.encode()]
    assert found == []
    assert any((tmp_path / "data").rglob("checkpoints.sqlite"))
    assert any((tmp_path / "data").rglob("chroma.sqlite3"))


def _headers(requests: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [r["headers"] for r in requests]


def _all_variants() -> list[bytes]:
    return [v for s in (HUBSPOT, DUX, SMTP, MODEL) for v in _variants(s)]
