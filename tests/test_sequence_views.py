"""Where each sequence stands, as `gtm status` and the web inbox show it, and closing an
escalation from the web inbox.

In-process, on real stores under tmp_path: ledger rows at several sequence positions (one
scheduled, one due, one waiting for the accept, one stopped, one finished, one under a campaign
whose playbook has a longer sequence) and one open escalation. Step names and counts come from
the campaigns' playbooks; what comes from data is escaped in the terminal and the page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

import gtm.domain
from gtm.app.campaigns import CampaignBook
from gtm.app.escalations import needs_human, open_store
from gtm.app.ledger import Ledger, ThreadRow
from gtm.app.sequence_status import fmt_span, sequence_standing
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.models import Account, AccountStatus, Channel
from gtm.domain.playbook import Playbook, load_playbook
from gtm.domain.threads import thread_id_for
from tools.escalations import Escalation

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
# Half an hour of slack: "due in 2d 0h" stays true however slowly the test runs.
SOON = NOW + timedelta(days=2, minutes=30)
LATE = NOW - timedelta(hours=3)
ODD = "Brace [red]Labs[/red] <i>Co</i>"
"""A company name that is both Rich markup and HTML: shown as written, never interpreted."""
STOPPED = "replied by email: <b>not now</b> [bold]thanks[/bold]"


def _utc(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def _row(
    ledger: Ledger,
    campaign: str,
    company: str,
    channel: Channel,
    *,
    status: AccountStatus = "sent",
    position: int = 0,
    due: datetime | None = None,
    stopped: str | None = None,
) -> ThreadRow:
    domain = re.sub(r"[^a-z]", "", company.lower())[:12] + ".example"
    account = Account(account_id=domain, company=company, domain=domain)
    ledger.ensure(campaign, account, channel)
    tid = thread_id_for(campaign, domain)
    ledger.update(tid, status=status, tier=2)
    ledger.set_sequence(tid, position=position, next_due=due)
    if stopped:
        ledger.stop_sequence(tid, stopped)
    row = ledger.get(tid)
    assert row is not None
    return row


def _long_playbook(tmp: Path) -> Playbook:
    """The shipped playbook with three LinkedIn follow-ups instead of two."""
    text = (Path(gtm.domain.__file__).parent / "playbook.default.yaml").read_text(encoding="utf-8")
    short = (
        "    - {action: message, after: accepted, wait_days: 2}   # first message: no pitch to"
        " OSS users\n"
    )
    assert short in text
    longer = text.replace(short, short + "    - {action: message, after: previous, wait_days: 3}\n")
    path = tmp / "long.yaml"
    path.write_text(longer, encoding="utf-8")
    pb = load_playbook(path)
    assert len(pb.sequences.linkedin) == 3
    return pb


@dataclass
class Seeded:
    data: Path
    rows: dict[str, ThreadRow]
    escalation: Escalation


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    data = tmp_path / "data"

    async def go() -> Seeded:
        async with open_workspace(Settings(data_dir=data), with_model=False) as ws:
            led = ws.ledger
            rows = {
                "accept": _row(led, "spring", "Acceptly", "linkedin"),
                "soon": _row(led, "spring", "Soonish", "linkedin", position=1, due=SOON),
                "due": _row(led, "spring", "Duely", "email", position=1, due=LATE),
                "stopped": _row(led, "spring", ODD, "email", position=1, stopped=STOPPED),
                "finished": _row(led, "spring", "Finito", "email", position=2),
                "unsent": _row(led, "spring", "Waitco", "linkedin", status="waiting_for_approval"),
                "long": _row(led, "longer", "Longway", "linkedin", position=1, due=SOON),
            }
            with open_store(ws) as store:
                esc, _ = store.add(
                    event_key="email:<r1@acme.example>",
                    signal="meeting_request",
                    action="create_task",
                    person="bob@acme.example",
                    contact="Bob Ray, <b>Engineer</b>",
                    company="Acme",
                    owner="owner@yourcompany.example",
                    evidence="a call on Tuesday?",
                    due_at=NOW + timedelta(hours=47),
                )
                store.acted(esc.id, "CRM task 7 due")
        book = CampaignBook(data / "ledger.sqlite")
        try:
            book.resolve("longer", _long_playbook(tmp_path), explicit=True, adopt=False)
        finally:
            book.close()
        return Seeded(data=data, rows=rows, escalation=esc)

    return asyncio.run(go())


# --------------------------------------------------------------------------- the standing


def test_each_state_reads_from_the_playbook_not_from_code(seeded: Seeded, tmp_path: Path) -> None:
    pb, long_pb, rows = load_playbook(), _long_playbook(tmp_path), seeded.rows

    def said(key: str, playbook: Playbook = pb) -> tuple[str, str]:
        s = sequence_standing(rows[key], playbook)
        assert s is not None, key
        return s.position, s.outlook(NOW)

    assert said("accept") == (
        "step 1 of 3: linkedin_connect",
        "next: linkedin_message, waiting for the connection to be accepted",
    )
    assert said("soon") == (
        "step 2 of 3: linkedin_message",
        f"next: linkedin_message due in 2d 0h ({_utc(SOON)})",
    )
    assert said("due") == ("step 2 of 3: email", f"next: email due now (since {_utc(LATE)})")
    assert said("stopped") == ("step 2 of 3: email", f"stopped: {STOPPED}")
    assert said("finished") == ("step 3 of 3: email", "finished")
    assert sequence_standing(rows["unsent"], pb) is None  # no first touch sent yet
    # The same row under a playbook with one more follow-up: a longer sequence, a next step.
    assert said("long", long_pb) == (
        "step 2 of 4: linkedin_message",
        f"next: linkedin_message due in 2d 0h ({_utc(SOON)})",
    )
    assert said("finished", pb.model_copy(update={"sequences": long_pb.sequences})) == (
        "step 3 of 3: email",
        "finished",
    )


def test_a_follow_up_in_flight_or_ended_says_so(tmp_path: Path) -> None:
    pb = load_playbook()
    ledger = Ledger(tmp_path / "ledger.sqlite")
    try:
        waiting = _row(ledger, "c", "Waiting", "email", status="waiting_for_approval", position=1)
        rejected = _row(ledger, "c", "Rejected", "email", status="rejected", position=1)
        deferred = _row(ledger, "c", "Deferred", "linkedin", status="deferred", position=1)
        unscheduled = _row(ledger, "c", "Fresh", "email")
        odd = _row(ledger, "c", "Gone", "email", position=5)
    finally:
        ledger.close()
    out = {
        r.company: ((s := sequence_standing(r, pb)) and (s.position, s.outlook(NOW)))
        for r in (waiting, rejected, deferred, unscheduled, odd)
    }
    assert out == {
        "Waiting": ("step 2 of 3: email", "this step waits for approval"),
        "Rejected": ("step 2 of 3: email", "ended: this step was rejected; no further step"),
        "Deferred": (
            "step 2 of 3: linkedin_message",
            "this step is deferred (cap reached); it is sent once the cap allows",
        ),
        "Fresh": (
            "step 1 of 3: email",
            "next: email, not scheduled yet (the next gtm run or gtm serve schedules it)",
        ),
        # A playbook shortened under a running campaign: the position is kept, not renamed.
        "Gone": ("step 6 of 6: no longer in the playbook", "finished"),
    }


def test_spans_read_like_a_person_would_say_them() -> None:
    assert fmt_span(timedelta(days=2, hours=3, minutes=59)) == "2d 3h"
    assert fmt_span(timedelta(hours=5, minutes=10)) == "5h 10m"
    assert fmt_span(timedelta(minutes=12, seconds=59)) == "12m"
    assert fmt_span(timedelta(minutes=-5)) == "0m"


# --------------------------------------------------------------------------- gtm status


def test_gtm_status_shows_every_sequence_per_campaign_escaped(
    seeded: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gtm.cli import app

    monkeypatch.setenv("GTM_DATA_DIR", str(seeded.data))
    result = CliRunner().invoke(app, ["status"], env={"COLUMNS": "320"})
    assert result.exit_code == 0, result.output
    text = result.output
    # The lines that were there before keep their format.
    assert re.search(r"campaign spring: 6 account\(s\)", text)
    assert "outbox: empty" in text
    spring = text.index("sequences in spring: 5 thread(s) past the first touch")
    longer = text.index("sequences in longer: 1 thread(s) past the first touch")
    lines = {
        key: next(ln for ln in text.splitlines() if row.company in ln and "step" in ln)
        for key, row in seeded.rows.items()
        if key != "unsent"
    }
    assert "step 1 of 3: linkedin_connect" in lines["accept"]
    assert "waiting for the connection to be accepted" in lines["accept"]
    assert f"due in 2d 0h ({_utc(SOON)})" in lines["soon"]
    assert f"next: email due now (since {_utc(LATE)})" in lines["due"]
    assert "finished" in lines["finished"] and "step 3 of 3: email" in lines["finished"]
    assert "step 2 of 4: linkedin_message" in lines["long"]
    assert longer < text.index("Longway") < spring  # campaigns in name order, each its own
    # Markup in the data is printed as written, not read as style.
    assert ODD in lines["stopped"] and f"stopped: {STOPPED}" in lines["stopped"]
    assert "Waitco" not in text.split("sequences in spring")[1].split("sequences in longer")[0]


# --------------------------------------------------------------------------- the web inbox


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient]:
    from gtm.web.app import create_app

    app = create_app(Settings(data_dir=seeded.data), token="t0ken")
    with TestClient(app, base_url="http://127.0.0.1") as c:
        r = c.post("/login", data={"token": "t0ken", "reviewer": "rita"}, follow_redirects=False)
        assert r.status_code == 303, r.text
        yield c


def _csrf(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "no CSRF token on the page"
    return m.group(1)


def _sequence_rows(page: str) -> dict[int, str]:
    section = page.split('id="sequences"', 1)[1].split("</section>", 1)[0]
    found = re.findall(r'<tr data-id="(\d+)" class="sequence [a-z_]+">(.*?)</tr>', section, re.S)
    return {int(i): " ".join(re.sub(r"<[^>]+>", " ", body).split()) for i, body in found}


def test_the_queue_lists_every_sequence_soonest_first_escaped(
    seeded: Seeded, client: TestClient
) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "Sequences (6)" in page.text
    shown = _sequence_rows(page.text)
    r = seeded.rows
    assert list(shown) == [
        r["due"].id,  # due now first, then by due time, then what waits, stopped, finished
        r["soon"].id,
        r["long"].id,
        r["accept"].id,
        r["stopped"].id,
        r["finished"].id,
    ]
    assert f"step 2 of 3: email next: email due now (since {_utc(LATE)})" in shown[r["due"].id]
    assert f"due in 2d 0h ({_utc(SOON)})" in shown[r["soon"].id]
    assert "step 2 of 4: linkedin_message" in shown[r["long"].id]
    assert "waiting for the connection to be accepted" in shown[r["accept"].id]
    assert "step 3 of 3: email finished" in shown[r["finished"].id]
    # HTML in the data stays text; the Rich markup is just characters here.
    assert "Brace [red]Labs[/red] &lt;i&gt;Co&lt;/i&gt;" in page.text
    assert "stopped: replied by email: &lt;b&gt;not now&lt;/b&gt; [bold]thanks[/bold]" in page.text
    assert "<i>Co</i>" not in page.text and "<b>not now</b>" not in page.text
    # The queue's filters narrow the list too.
    only_email = _sequence_rows(client.get("/?channel=email").text)
    assert set(only_email) == {r["due"].id, r["stopped"].id, r["finished"].id}
    assert set(_sequence_rows(client.get("/?campaign=longer").text)) == {r["long"].id}


def test_the_thread_page_shows_its_sequence(seeded: Seeded, client: TestClient) -> None:
    r = seeded.rows
    page = client.get(f"/drafts/{r['soon'].id}")
    assert page.status_code == 200
    line = page.text.split('id="sequence"', 1)[1].split("</p>", 1)[0]
    assert "step 2 of 3: linkedin_message" in line
    assert f"next: linkedin_message due in 2d 0h ({_utc(SOON)})" in line
    stopped = client.get(f"/drafts/{r['stopped'].id}").text
    assert "stopped: replied by email: &lt;b&gt;not now&lt;/b&gt;" in stopped
    assert 'id="sequence"' not in client.get(f"/drafts/{r['unsent'].id}").text


def _escalation(data: Path, esc_id: int) -> Escalation:
    async def go() -> Escalation:
        async with open_workspace(Settings(data_dir=data), with_model=False) as ws:
            (found,) = [e for e in needs_human(ws, include_done=True) if e.id == esc_id]
            return found

    return asyncio.run(go())


def test_done_closes_an_escalation_once_as_the_signed_in_reviewer(
    seeded: Seeded, client: TestClient
) -> None:
    esc = seeded.escalation
    page = client.get("/")
    assert "Needs a human: escalations (1)" in page.text
    assert f'action="/escalations/{esc.id}/done"' in page.text
    assert "Bob Ray, &lt;b&gt;Engineer&lt;/b&gt;" in page.text
    token = _csrf(page.text)

    done = client.post(f"/escalations/{esc.id}/done", data={"csrf": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/"
    closed = _escalation(seeded.data, esc.id)
    assert closed.done and closed.done_by == "rita"
    back = client.get("/")
    assert f"Escalation {esc.id} (meeting request, Bob Ray, &lt;b&gt;Engineer&lt;/b&gt;)" in (
        back.text
    )
    assert "marked done." in back.text
    assert "Needs a human: escalations" not in back.text  # none open any more

    # A second click (a stale page, a second reviewer) says so and changes nothing.
    again = client.post(f"/escalations/{esc.id}/done", data={"csrf": token}, follow_redirects=True)
    assert again.status_code == 200
    assert f"Escalation {esc.id} was already closed by rita at" in again.text
    assert _escalation(seeded.data, esc.id) == closed

    missing = client.post("/escalations/9999/done", data={"csrf": token}, follow_redirects=True)
    assert "No escalation 9999." in missing.text


def test_a_forged_or_anonymous_done_is_refused_and_changes_nothing(
    seeded: Seeded, client: TestClient
) -> None:
    esc = seeded.escalation
    before = _escalation(seeded.data, esc.id)
    assert not before.done
    forged = client.post(f"/escalations/{esc.id}/done", data={}, follow_redirects=False)
    assert forged.status_code == 403 and "security token" in forged.text
    wrong = client.post(
        f"/escalations/{esc.id}/done", data={"csrf": "guess"}, follow_redirects=False
    )
    assert wrong.status_code == 403
    token = _csrf(client.get("/").text)
    elsewhere = client.post(
        f"/escalations/{esc.id}/done",
        data={"csrf": token},
        headers={"origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert elsewhere.status_code == 403
    client.cookies.clear()
    anon = client.post(f"/escalations/{esc.id}/done", data={"csrf": token}, follow_redirects=False)
    assert anon.status_code == 401
    assert _escalation(seeded.data, esc.id) == before
