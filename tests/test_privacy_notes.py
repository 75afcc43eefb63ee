"""`gtm forget` reaches the reviewers' own words: a reject reason on a thread that stays may
name the person, at their account or at another one. At their account every mention goes;
elsewhere their address and profile go, and a bare name stays (another person may share it),
as in memory and checkpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gtm.app.ledger import Ledger
from gtm.domain.models import Account, Decision
from tests.test_privacy import DANA, HEADER, LEE, OMAR, Gtm, files_mentioning, gtm, ledger

__all__ = ["gtm"]  # the fixture, imported for pytest


def test_forget_redacts_decision_notes_on_the_threads_that_stay(gtm: Gtm, tmp_path: Path) -> None:
    csv = tmp_path / "accounts.csv"
    csv.write_text(f"{HEADER}\n{OMAR}\n{LEE}\n{DANA}\n", encoding="utf-8")
    assert gtm("run", str(csv), "--campaign", "c1").returncode == 0
    data = tmp_path / "data"
    ids = {str(a): str(i) for a, i in ledger(data, "SELECT account_id, id FROM threads")}
    omar, dana = ids["lexora.law"], ids["quillcode.dev"]
    for row, where in ((omar, "at Lexora"), (dana, "elsewhere")):
        reason = f"Lee Park (lee@lexora.law) owns this {where}; see linkedin.com/in/lee-park"
        done = gtm("reject", row, "--reason", reason)
        assert done.returncode == 0, done.stdout + done.stderr
    assert files_mentioning(data, ["lee@lexora.law"])

    gone = gtm("forget", "lee@lexora.law", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr

    notes = [n for (n,) in ledger(data, "SELECT note FROM decisions ORDER BY seq")]
    assert notes == [
        "[erased] ([erased]) owns this at Lexora; see [erased]",
        "Lee Park ([erased]) owns this elsewhere; see [erased]",  # a namesake's, maybe
    ]
    details = {str(a): str(d) for a, d in ledger(data, "SELECT account_id, detail FROM threads")}
    assert details["quillcode.dev"] == notes[1]
    assert files_mentioning(data, ["lee@lexora.law", "lee-park"]) == {}
    assert files_mentioning(data, ["Omar Haddad", "Dana Ruiz"]), "only Lee was erased"


def test_redact_notes_reaches_an_unapplied_decision_and_only_the_threads_named(
    tmp_path: Path,
) -> None:
    """A decision recorded but not yet applied (its process died) keeps its text in the row
    until it is applied: the redaction reaches it too, and leaves other threads alone."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    at = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        ledger.ensure("c1", Account(account_id=d, company=d, domain=d), "email")
        for d in ("lexora.law", "quillcode.dev")
    ]
    for row in rows:
        ask = Decision(action="regenerate", instructions="drop Lee Park", reviewer="r", at=at)
        ledger.record_decision(row.id, decision=ask, interrupt_id="i")
    lexora, quill = (r.thread_id for r in rows)

    assert ledger.redact_notes([lexora], lambda t: t.replace("Lee Park", "[erased]")) == 2
    assert [n.note for n in ledger.history(lexora)] == ["drop [erased]"]
    assert [n.note for n in ledger.history(quill)] == ["drop Lee Park"]
    pending = ledger.pending(lexora)
    assert pending is not None and pending[0].instructions == "drop [erased]"
    assert pending[0].action == "regenerate" and pending[1] == "i"
    untouched = ledger.pending(quill)
    assert untouched is not None and untouched[0].instructions == "drop Lee Park"
    ledger.close()
