"""`gtm suppress` and `gtm forget` through the real CLI, on the embedded local stores."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

ROOT = Path(__file__).resolve().parents[1]
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
            return subprocess.run(
                [sys.executable, "-m", "gtm", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                cwd=ROOT,
            )

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
