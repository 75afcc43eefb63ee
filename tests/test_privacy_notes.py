"""`gtm forget` reaches the reviewers' own words: a reject reason on a thread that stays may
name the person, at their account or at another one. At their account every mention goes;
elsewhere their address and profile go, and a bare name stays (another person may share it),
as in memory and checkpoints."""

from __future__ import annotations

from pathlib import Path

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
    details = dict(ledger(data, "SELECT account_id, detail FROM threads"))
    assert details["quillcode.dev"] == notes[1]
    assert files_mentioning(data, ["lee@lexora.law", "lee-park"]) == {}
    assert files_mentioning(data, ["Omar Haddad", "Dana Ruiz"]), "only Lee was erased"
