"""`gtm suppress` and `gtm forget` through the real CLI, on the embedded local stores."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.cli import run_gtm
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts
from tests.support.providers import FakeSlack
from tools.alerts import SqliteAlertQueue

HEADER = "company,domain,segment,description,contact_name,contact_title,linkedin_url,email,signals"
DANA = (
    "Quillcode,quillcode.dev,AI coding assistant,Builds an AI coding assistant for monorepos.,"
    "Dana Ruiz,VP Engineering,https://www.linkedin.com/in/dana-ruiz,dana@quillcode.dev,"
    "Hiring 4 ML infrastructure engineers;3 sign-ups from this domain in the last 30 days"
)
OMAR = (
    "Lexora,lexora.law,legal tech,Contract review for mid-size law firms.,Omar Haddad,"
    "Head of Engineering,https://www.linkedin.com/in/omar-haddad,omar@lexora.law,"
    "Raised a Series B in June 2026;Opened GitHub issue #77 on our repo about index freshness"
)
Gtm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def gtm(tmp_path: Path) -> Iterator[Gtm]:
    with ScriptedOpenAIServer(responder=write_from_facts) as model:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        env.update(
            GTM_DATA_DIR=str(tmp_path / "data"),
            GTM_MODEL_BASE_URL=model.base_url,
            GTM_MODEL="scripted",
            ANONYMIZED_TELEMETRY="False",
        )

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return run_gtm(env, *args)

        yield run


def files_mentioning(root: Path, needles: list[str]) -> dict[str, list[str]]:
    """Every file under `root` whose bytes contain a needle (case-insensitive)."""
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file():
            blob = path.read_bytes().lower()
            hits = [n for n in needles if n.lower().encode() in blob]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


@pytest.mark.timeout(360)  # a dozen `gtm` processes: past the default 120 s on a loaded machine
def test_forget_erases_a_person_everywhere_and_keeps_them_suppressed(
    gtm: Gtm, tmp_path: Path
) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{DANA}\n{OMAR}\n", encoding="utf-8")
    first = gtm("run", str(csv), "--campaign", "c1")
    assert first.returncode == 0, first.stdout + first.stderr
    # A reviewer's words about her are kept in the decision history until she is erased.
    db = sqlite3.connect(tmp_path / "data" / "ledger.sqlite")
    try:
        (dana_draft,) = db.execute("SELECT id FROM threads WHERE company = 'Quillcode'").fetchone()
    finally:
        db.close()
    redo = gtm("regenerate", str(dana_draft), "--instructions", "open with Dana Ruiz's talk")
    assert redo.returncode == 0, redo.stdout + redo.stderr
    listed = gtm("inbox")
    assert "regenerate by" in listed.stdout and "Dana Ruiz's talk" in listed.stdout, listed.stdout
    for draft in ("1", "2"):
        ok = gtm("approve", draft)
        assert ok.returncode == 0 and "→ sent" in ok.stdout, ok.stdout + ok.stderr
    data = tmp_path / "data"
    # What came back from her is personal data too.
    reply = gtm(
        "events",
        "add",
        "--kind",
        "email_reply",
        "--email",
        "dana@quillcode.dev",
        "--text",
        "Thanks, Dana Ruiz here: interested, send details.",
    )
    assert reply.returncode == 0, reply.stdout + reply.stderr
    dana = ["dana@quillcode.dev", "linkedin.com/in/dana-ruiz", "Dana Ruiz"]
    assert files_mentioning(data, dana), "the campaign stored Dana somewhere"

    gone = gtm("forget", "dana@quillcode.dev", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert "erasure" in gone.stdout and "recorded" in gone.stdout
    assert files_mentioning(data, dana) == {}, "Dana's data survived the erasure"
    assert files_mentioning(data, ["omar@lexora.law", "Omar Haddad"]), "only Dana was erased"

    listed = gtm("suppress", "--list")
    assert "erased" in listed.stdout and "dana" not in listed.stdout.lower()

    # A new campaign on the same list never reaches her again, on either channel.
    for channel in ("linkedin", "email"):
        again = gtm("run", str(csv), "--campaign", f"c2-{channel}", "--channel", channel)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "skipped: suppressed" in again.stdout or "skipped: cooldown" in again.stdout
    status = gtm("status", "--campaign", "c2-email")
    assert "suppressed" in status.stdout or "cooldown" in status.stdout
    inbox = gtm("inbox")
    assert "Dana" not in inbox.stdout
    # Running a campaign again on a list that still names her stores nothing about her.
    rerun = gtm("run", str(csv), "--campaign", "c1")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert files_mentioning(data, dana) == {}, "a new run wrote her back"


def test_an_opt_out_on_one_channel_covers_the_others(gtm: Gtm, tmp_path: Path) -> None:
    both = tmp_path / "both.csv"
    both.write_text(f"{HEADER}\n{DANA}\n", encoding="utf-8")
    assert gtm("run", str(both), "--campaign", "mail", "--channel", "email").returncode == 0
    assert gtm("approve", "1").returncode == 0  # the CRM now knows Dana by email and profile

    added = gtm("suppress", "--email", "dana@quillcode.dev", "--reason", "replied: stop")
    assert added.returncode == 0 and "3 do-not-contact entries" in added.stdout, added.stdout
    # A LinkedIn-only row for her, in a later campaign: the email opt-out covers it.
    linkedin_only = DANA.replace("dana@quillcode.dev", "")
    li = tmp_path / "li.csv"
    li.write_text(f"{HEADER}\n{linkedin_only}\n", encoding="utf-8")
    run = gtm("run", str(li), "--campaign", "li")
    assert run.returncode == 0 and "skipped: suppressed" in run.stdout, run.stdout


def test_a_do_not_contact_csv_lands_its_good_rows_and_names_the_bad(
    gtm: Gtm, tmp_path: Path
) -> None:
    dnc = tmp_path / "dnc.csv"
    dnc.write_text(
        "email,domain,linkedin_url,reason\n"
        "ann@acme.example,,,asked at an event\n"
        "not-an-email,,,typo\n"
        ",competitor.example,,competitor\n"
        ",,https://example.com/in/x,wrong site\n"
        ",,,\n",
        encoding="utf-8",
    )
    res = gtm("suppress", "--file", str(dnc))
    assert res.returncode == 1
    assert "2 do-not-contact entries added" in res.stdout
    err = " ".join(res.stderr.split())
    assert f"{dnc}: row 3: email: 'not-an-email' is not an email address" in err
    assert f"{dnc}: row 5: linkedin_url:" in err
    assert f"{dnc}: row 6: email/domain/linkedin_url: all empty" in err
    listed = gtm("suppress", "--list").stdout
    assert "ann@acme.example" in listed and "competitor.example" in listed
    assert gtm("suppress").returncode == 2
    assert gtm("forget", "not an identifier", "--yes").returncode == 2


# ------------------------------------------------------------ issue 14: who a person is


LEE = (
    "Lexora,lexora.law,legal tech,Contract review for mid-size law firms.,Lee Park,"
    "General Counsel,https://www.linkedin.com/in/lee-park,lee@lexora.law,"
)
KIM = (
    "Lexora,lexora.law,legal tech,Contract review for mid-size law firms.,Kim Vale,"
    "CTO,https://www.linkedin.com/in/kim-vale,kim@lexora.law,"
)


def ledger(data: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(data / "ledger.sqlite")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_suppress_refuses_junk_and_stores_one_form_of_each_identifier(
    gtm: Gtm, tmp_path: Path
) -> None:
    junk = gtm(
        "suppress",
        "--email", "not-an-email",
        "--domain", "acme",
        "--domain", "jane@acme.example",
        "--linkedin", "https://www.linkedin.com/company/quillcode",
        "--email", "ann@acme.example",
    )  # fmt: skip
    assert junk.returncode == 2, junk.stdout + junk.stderr
    said = " ".join(junk.stderr.split())
    assert "--email: 'not-an-email' is not an email address" in said
    assert "--domain: 'acme' is not a domain" in said
    assert "--domain: 'jane@acme.example' is an email address, not a domain" in said
    assert "--linkedin: 'https://www.linkedin.com/company/quillcode' is not a LinkedIn" in said
    assert "ann@acme.example" not in gtm("suppress", "--list").stdout  # nothing was added

    # A profile in a country spelling, a domain given as a URL: each lands in its one form.
    ok = gtm(
        "suppress", "--linkedin", "de.linkedin.com/in/Dana-Ruiz/", "--domain",
        "https://www.Competitor.example/pricing",
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    listed = gtm("suppress", "--list").stdout
    assert "https://www.linkedin.com/in/dana-ruiz" in listed and "de.linkedin" not in listed
    assert "competitor.example" in listed and "pricing" not in listed
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{DANA}\n", encoding="utf-8")
    run = gtm("run", str(csv), "--campaign", "c1")
    assert run.returncode == 0 and "skipped: suppressed" in run.stdout, run.stdout + run.stderr


def test_forget_finds_a_person_under_any_profile_spelling_and_says_when_nothing_matches(
    gtm: Gtm, tmp_path: Path
) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{DANA}\n", encoding="utf-8")
    assert gtm("run", str(csv), "--campaign", "c1").returncode == 0
    assert gtm("approve", "1").returncode == 0
    data = tmp_path / "data"
    dana = ["dana@quillcode.dev", "linkedin.com/in/dana-ruiz", "Dana Ruiz"]
    assert files_mentioning(data, dana)

    gone = gtm("forget", "https://de.linkedin.com/in/Dana-Ruiz/?trk=public", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert files_mentioning(data, dana) == {}, "a country spelling of her profile erased nothing"

    again = gtm("forget", "dana@quillcode.dev", "--yes")
    assert again.returncode == 1, again.stdout + again.stderr
    assert "erased before" in " ".join(again.stderr.split())
    nobody = gtm("forget", "nobody@quillcode.dev", "--yes")
    assert nobody.returncode == 1, nobody.stdout + nobody.stderr
    assert "Nothing was erased" in " ".join(nobody.stderr.split())
    erasures = sqlite3.connect(data / "suppressions.sqlite")
    try:
        assert erasures.execute("SELECT COUNT(*) FROM erasures").fetchone() == (1,)
    finally:
        erasures.close()
    assert gtm("forget", "https://www.linkedin.com/company/quillcode", "--yes").returncode == 2


def test_forgetting_a_colleague_keeps_the_thread_that_wrote_to_someone_else(
    gtm: Gtm, tmp_path: Path
) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{OMAR}\n{LEE}\n{KIM}\n", encoding="utf-8")
    assert gtm("run", str(csv), "--campaign", "c1").returncode == 0  # a draft to Omar waits
    data = tmp_path / "data"
    lee = ["lee@lexora.law", "lee-park", "Lee Park"]
    kim = ["kim@lexora.law", "kim-vale", "Kim Vale"]
    assert files_mentioning(data, lee) and files_mentioning(data, kim)

    # Lee was never written to: only Lee goes; Omar's waiting draft stays and can be sent.
    gone = gtm("forget", "lee@lexora.law", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert ledger(data, "SELECT status, skip_reason FROM threads") == [
        ("waiting_for_approval", None)
    ]
    assert files_mentioning(data, lee) == {}, "Lee's data survived the erasure"
    sent = gtm("approve", "1")
    assert sent.returncode == 0 and "→ sent" in sent.stdout, sent.stdout + sent.stderr

    # Kim, after the send: the thread stays sent, with its decision history.
    gone = gtm("forget", "https://www.linkedin.com/in/kim-vale", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert ledger(data, "SELECT status FROM threads") == [("sent",)]
    assert ledger(data, "SELECT action FROM decisions") == [("approve",)]
    assert files_mentioning(data, kim) == {}, "Kim's data survived the erasure"
    assert files_mentioning(data, ["omar@lexora.law", "Omar Haddad"]), "only they were erased"
    status = gtm("status", "--campaign", "c1")
    assert "sent" in status.stdout and "erased" not in status.stdout, status.stdout


def test_forgetting_one_of_the_people_a_skip_names_keeps_the_skip(gtm: Gtm, tmp_path: Path) -> None:
    added = gtm("suppress", "--email", "lee@lexora.law", "--email", "omar@lexora.law")
    assert added.returncode == 0, added.stdout + added.stderr
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{LEE}\n{OMAR}\n", encoding="utf-8")
    assert gtm("run", str(csv), "--campaign", "c1").returncode == 0
    data = tmp_path / "data"
    ((detail,),) = ledger(data, "SELECT detail FROM threads")
    assert "lee@lexora.law" in str(detail) and "omar@lexora.law" in str(detail)

    assert gtm("forget", "lee@lexora.law", "--yes").returncode == 0
    ((status, reason, detail),) = ledger(data, "SELECT status, skip_reason, detail FROM threads")
    assert (status, reason) == ("skipped", "suppressed")
    assert "lee@lexora.law" not in str(detail) and "omar@lexora.law" in str(detail)
    assert files_mentioning(data, ["lee@lexora.law", "lee-park", "Lee Park"]) == {}


def test_a_kept_draft_that_named_the_erased_person_cannot_go_out_as_written(
    gtm: Gtm, tmp_path: Path
) -> None:
    # Omar's draft quotes the company's description, which names his colleague Lee.
    omar = OMAR.replace(
        "Contract review for mid-size law firms.", "Contract review led by Lee Park."
    )
    assert omar != OMAR
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{omar}\n{LEE}\n", encoding="utf-8")
    assert gtm("run", str(csv), "--campaign", "c1").returncode == 0
    before = gtm("inbox")
    assert "led by Lee Park" in before.stdout, before.stdout

    assert gtm("forget", "lee@lexora.law", "--yes").returncode == 0
    after = gtm("inbox")
    assert "led by [erased]" in after.stdout and "Lee" not in after.stdout, after.stdout
    refused = gtm("approve", "1")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "cannot be sent as written" in refused.stderr and "[erased]" in refused.stderr
    assert ledger(tmp_path / "data", "SELECT status FROM threads") == [("waiting_for_approval",)]
    note = "Hi Omar, saw Lexora at LegalTech Week this year. Open to comparing notes on review?"
    edited = gtm("edit", "1", "--text", note)
    assert edited.returncode == 0 and "→ sent" in edited.stdout, edited.stdout + edited.stderr


def test_forget_rewrites_a_slack_alert_that_has_not_gone_out(tmp_path: Path) -> None:
    """An alert Slack has not taken yet waits in the queue with the person's name in it: after
    `gtm forget` it names nobody, in the queue and when it finally goes out."""
    with ScriptedOpenAIServer(responder=write_from_facts) as model, FakeSlack() as slack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        env.update(
            GTM_DATA_DIR=str(tmp_path / "data"),
            GTM_MODEL_BASE_URL=model.base_url,
            GTM_MODEL="scripted",
            GTM_SLACK_WEBHOOK_URL=slack.webhook_url,
            ANONYMIZED_TELEMETRY="False",
        )
        csv = tmp_path / "accounts.csv"
        csv.write_text(f"{HEADER}\n{DANA}\n{OMAR}\n", encoding="utf-8")
        first = run_gtm(env, "run", str(csv), "--campaign", "c1")
        assert first.returncode == 0, first.stdout + first.stderr
        data = tmp_path / "data"
        queue = SqliteAlertQueue(data / "alerts.sqlite")  # as SlackAlerts left it, Slack down
        queue.put(datetime.now(UTC), "escalation", "Dana Ruiz (VP) replied: book a call")
        queue.put(datetime.now(UTC), "escalation", "Omar Haddad replied: not now")
        queue.close()
        assert "alerts.sqlite" in files_mentioning(data, ["Dana Ruiz"])

        gone = run_gtm(env, "forget", "dana@quillcode.dev", "--yes")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert "queued alerts redacted 1" in " ".join(gone.stdout.split()), gone.stdout
        assert files_mentioning(data, ["dana@quillcode.dev", "Dana Ruiz"]) == {}

        again = run_gtm(env, "run", str(csv), "--campaign", "c1")  # Slack is up: flushed
        assert again.returncode == 0, again.stdout + again.stderr
    assert slack.posted == [
        ":rotating_light: *escalation*: [erased] (VP) replied: book a call",
        ":rotating_light: *escalation*: Omar Haddad replied: not now",
    ]
