"""The web inbox over real HTTP: sign-in, CSRF, decisions exactly once, batch rules, filters.

One seeded data dir and one `gtm inbox --web` process serve the module; each test decides its
own drafts. The browser tests are in `test_web_browser.py`.
"""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gtm.app.ledger import ThreadRow
from gtm.web.views import QueueFilters, fmt_age, marked, source_link
from tests.support.cli import run_gtm
from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.web import (
    BLANK_ACCOUNT,
    ROOT,
    WEB_ACCOUNTS,
    WebInboxProcess,
    seed,
    web_env,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, model_server: ScriptedOpenAIServer) -> Path:
    d = tmp_path_factory.mktemp("web-http")
    blank = tmp_path_factory.mktemp("lists") / "blank.csv"
    header = WEB_ACCOUNTS.read_text(encoding="utf-8").splitlines()[0]
    blank.write_text(f"{header}\n{BLANK_ACCOUNT}\n", encoding="utf-8")
    seed(
        d,
        model_server.base_url,
        [("spring", "linkedin", WEB_ACCOUNTS), ("blank", "linkedin", blank)],
    )
    return d


@pytest.fixture(scope="module")
def web(data: Path, model_server: ScriptedOpenAIServer) -> Iterator[WebInboxProcess]:
    with WebInboxProcess(data, web_env(model_server.base_url)) as proc:
        yield proc


def _ledger(data: Path) -> dict[str, sqlite3.Row]:
    db = sqlite3.connect(data / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return {r["company"]: r for r in db.execute("SELECT * FROM threads")}
    finally:
        db.close()


def _outbox(data: Path, account_id: str) -> list[tuple[str, str]]:
    db = sqlite3.connect(data / "outbox.sqlite")
    try:
        return db.execute(
            "SELECT step, state FROM outbox WHERE account_id = ? ORDER BY step", (account_id,)
        ).fetchall()
    finally:
        db.close()


def _settled(data: Path, company: str, timeout: float = 30) -> sqlite3.Row:
    """The ledger row once the background worker has applied the decision."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = _ledger(data)[company]
        if row["pending_decision"] is None and row["status"] != "waiting_for_approval":
            return row
        if row["pending_decision"] is None and row["decision"] == "regenerate":
            return row
        time.sleep(0.1)
    raise AssertionError(f"{company}: the decision was never applied: {dict(row)}")


_OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _anon(web: WebInboxProcess) -> httpx.Client:
    c = httpx.Client(base_url=web.base_url, follow_redirects=False, timeout=30)
    _OPEN.append(c)
    return c


def _client(web: WebInboxProcess, reviewer: str) -> httpx.Client:
    c = _anon(web)
    r = c.post("/login", data={"token": web.token, "reviewer": reviewer})
    assert r.status_code == 303, r.text
    return c


def _csrf(client: httpx.Client, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    m = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert m, "no CSRF token on the page"
    return m.group(1)


# --------------------------------------------------------------------------- sign-in


def test_every_page_needs_the_token_then_a_session_cookie(web: WebInboxProcess) -> None:
    anon = _anon(web)
    assert anon.get("/").status_code == 401
    assert anon.get("/drafts/1").status_code == 401
    assert anon.post("/drafts/1/decide", data={"action": "approve"}).status_code == 401
    bad = anon.post("/login", data={"token": "guess", "reviewer": "x"})
    assert bad.status_code == 403 and "not the one this server printed" in bad.text
    odd = anon.post("/login", data={"token": "ünïcode-guess", "reviewer": "x"})
    assert odd.status_code == 403

    client = _client(web, "Casey")
    cookie = client.cookies.jar
    (c,) = list(cookie)
    assert c.name == "gtm_session" and c.has_nonstandard_attr("HttpOnly")
    page = client.get("/")
    assert page.status_code == 200 and "Reviewing as <strong>Casey</strong>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["server-timing"].startswith("app;dur=")


def test_only_loopback_host_names_are_answered(web: WebInboxProcess) -> None:
    """A DNS-rebinding page (Host: evil.example) is refused before any route runs."""
    r = _anon(web).get("/login", headers={"Host": "evil.example"})
    assert r.status_code == 400


def test_the_token_never_reaches_the_server_output(web: WebInboxProcess) -> None:
    client = _client(web, "Logger")
    client.get("/")
    time.sleep(0.3)
    later = "".join(web.output[1:])  # everything after the sign-in link itself
    assert web.token not in later


# --------------------------------------------------------------------------- CSRF


def test_state_changes_need_the_sessions_csrf_token(web: WebInboxProcess, data: Path) -> None:
    target = _ledger(data)["Forkwise"]
    client = _client(web, "Mallory")
    path = f"/drafts/{target['id']}/decide"
    missing = client.post(path, data={"action": "approve"})
    assert missing.status_code == 403 and "security token" in missing.text
    wrong = client.post(path, data={"action": "approve", "csrf": "x" * 43})
    assert wrong.status_code == 403
    foreign = client.post(
        path,
        data={"action": "approve", "csrf": _csrf(client)},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and "another site" in foreign.text
    other = _client(web, "Other")  # another session's token is not this session's
    stolen = other.post(path, data={"action": "approve", "csrf": _csrf(client)})
    assert stolen.status_code == 403
    batch = client.post("/batch", data={"ids": [str(target["id"])]})
    assert batch.status_code == 403
    time.sleep(0.3)
    assert _ledger(data)["Forkwise"]["status"] == "waiting_for_approval"
    assert _ledger(data)["Forkwise"]["decided_by"] is None
    assert _outbox(data, target["account_id"]) == []


# --------------------------------------------------------------------------- exactly once


def test_two_reviewers_clicking_at_once_send_exactly_once(web: WebInboxProcess, data: Path) -> None:
    target = _ledger(data)["Helpwell"]
    clients = [_client(web, "Ana"), _client(web, "Ben")]
    tokens = [_csrf(c) for c in clients]
    results: list[httpx.Response] = []
    start = threading.Barrier(4)

    def click(i: int) -> None:
        start.wait()
        results.append(
            clients[i % 2].post(
                f"/drafts/{target['id']}/decide",
                data={"action": "approve", "csrf": tokens[i % 2]},
            )
        )

    threads = [threading.Thread(target=click, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes == [303, 409, 409, 409], codes
    for r in results:
        if r.status_code == 409:
            assert "already decided" in r.text
    row = _settled(data, "Helpwell")
    assert row["status"] == "sent" and row["decided_by"] in ("Ana", "Ben")
    assert _outbox(data, target["account_id"]) == [
        ("linkedin_connect", "sent"),
        ("linkedin_visit", "sent"),
    ]
    # Later, too: the draft page and a fresh POST say who decided and when.
    late = clients[0].post(
        f"/drafts/{target['id']}/decide", data={"action": "approve", "csrf": tokens[0]}
    )
    assert late.status_code == 409
    assert f"already decided by {row['decided_by']}" in late.text
    # Only the winning click is in the decision history.
    db = sqlite3.connect(data / "ledger.sqlite")
    try:
        history = db.execute(
            "SELECT action, reviewer FROM decisions WHERE thread_id = ?", (target["thread_id"],)
        ).fetchall()
    finally:
        db.close()
    assert history == [("approve", row["decided_by"])]
    db = sqlite3.connect(data / "crm.sqlite")
    try:
        assert db.execute("SELECT COUNT(*) FROM activities").fetchone()[0] >= 2
    finally:
        db.close()


def test_an_edit_the_channel_cannot_carry_is_refused_and_kept(
    web: WebInboxProcess, data: Path
) -> None:
    target = _ledger(data)["Briefcase Labs"]
    client = _client(web, "Edith")
    too_long = "Hi Elena, " + "contracts " * 60
    r = client.post(
        f"/drafts/{target['id']}/decide",
        data={"action": "edit", "text": too_long, "csrf": _csrf(client)},
    )
    assert r.status_code == 422 and "Edit refused" in r.text and "length" in r.text
    assert "contracts contracts" in r.text  # the reviewer's text is still in the editor
    empty = client.post(
        f"/drafts/{target['id']}/decide",
        data={"action": "reject", "reason": "  ", "csrf": _csrf(client)},
    )
    assert empty.status_code == 422 and "Say why" in empty.text
    assert _ledger(data)["Briefcase Labs"]["status"] == "waiting_for_approval"


def test_a_flagged_draft_is_sent_as_written_only_when_the_reviewer_confirms(
    web: WebInboxProcess, data: Path
) -> None:
    target = _ledger(data)["Briefcase Labs"]
    assert target["flagged"]
    client = _client(web, "Carla")
    url = f"/drafts/{target['id']}/decide"
    page = client.get(f"/drafts/{target['id']}").text
    assert 'id="confirm-flagged"' in page and "Approve anyway" in page
    r = client.post(url, data={"action": "approve", "csrf": _csrf(client)})
    assert r.status_code == 422 and "Tick the box" in r.text
    row = _ledger(data)["Briefcase Labs"]
    assert row["status"] == "waiting_for_approval" and row["decided_at"] is None
    assert _outbox(data, target["account_id"]) == []
    r = client.post(url, data={"action": "approve", "confirm": "yes", "csrf": _csrf(client)})
    assert r.status_code == 303
    assert _settled(data, "Briefcase Labs")["decided_by"] == "Carla"
    assert [s for _, s in _outbox(data, target["account_id"])] == ["sent", "sent"]


def test_a_draft_its_channel_cannot_carry_is_never_approved_as_written(
    web: WebInboxProcess, data: Path
) -> None:
    target = _ledger(data)["Blankpage"]
    assert target["flagged"] and target["status"] == "waiting_for_approval"
    client = _client(web, "Nora")
    url = f"/drafts/{target['id']}/decide"
    page = client.get(f"/drafts/{target['id']}").text
    assert 'id="unsendable"' in page and 'id="approve"' not in page
    assert "length: the message is empty" in page
    r = client.post(url, data={"action": "approve", "confirm": "yes", "csrf": _csrf(client)})
    assert r.status_code == 422, r.status_code
    assert "cannot be sent as written — length: the message is empty" in r.text
    # `gtm approve` refuses it with the same words, in another process.
    cli = run_gtm(web.env, "--data-dir", str(data), "approve", str(target["id"]), timeout=120)
    assert cli.returncode == 1, cli.stdout + cli.stderr
    assert "cannot be sent as written" in cli.stdout + cli.stderr
    row = _ledger(data)["Blankpage"]
    assert row["status"] == "waiting_for_approval" and row["pending_decision"] is None
    assert row["claimed_at"] is None and row["decided_at"] is None
    assert _outbox(data, target["account_id"]) == []
    # Rewritten by the reviewer into something the channel carries, it goes out.
    note = "Hi Mara, saw Blankpage shipped a Unity plugin this year. Open to comparing notes?"
    r = client.post(url, data={"action": "edit", "text": note, "csrf": _csrf(client)})
    assert r.status_code == 303
    assert _settled(data, "Blankpage")["status"] == "sent"
    assert [s for _, s in _outbox(data, target["account_id"])] == ["sent", "sent"]


def test_a_decision_recorded_before_a_crash_is_applied_when_the_inbox_restarts(
    tmp_path: Path, model_server: ScriptedOpenAIServer
) -> None:
    data = tmp_path / "crash"
    seed(data, model_server.base_url, [("crash", "linkedin", WEB_ACCOUNTS)])
    target = _ledger(data)["Tallyho Finance"]
    env = web_env(model_server.base_url)
    code = (
        "from tests.support.web import take_and_die; "
        f"take_and_die({str(data)!r}, {target['id']}, 'Crashy')"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=120)
    left = _ledger(data)["Tallyho Finance"]
    assert left["pending_decision"] is not None and left["claimed_by"] == "Crashy"
    assert _outbox(data, target["account_id"]) == []
    # The claim belongs to a dead process, so the restarted inbox applies the decision at once.
    with WebInboxProcess(data, env) as web:
        row = _settled(data, "Tallyho Finance")
        assert row["status"] == "sent" and row["decided_by"] == "Crashy"
        page = _client(web, "Later").get("/").text
        assert "Crashy" in page and "Tallyho Finance" in page
    assert _outbox(data, target["account_id"]) == [
        ("linkedin_connect", "sent"),
        ("linkedin_visit", "sent"),
    ]


# --------------------------------------------------------------------------- batch and queue


def test_batch_approval_only_for_tiers_the_playbook_allows(
    web: WebInboxProcess, data: Path
) -> None:
    rows = _ledger(data)
    tier1, tier2 = rows["Forkwise"], rows["Leadlight"]
    assert tier1["tier"] == 1 and tier2["tier"] == 2
    client = _client(web, "Batcher")
    r = client.post(
        "/batch", data={"ids": [str(tier1["id"]), str(tier2["id"])], "csrf": _csrf(client)}
    )
    assert r.status_code == 303
    page = client.get("/").text
    assert f"Batch-approved 1: #{tier2['id']}" in page
    assert f"#{tier1['id']} Forkwise: its tier needs one-by-one review" in page
    assert _settled(data, "Leadlight")["status"] == "sent"
    assert _ledger(data)["Forkwise"]["status"] == "waiting_for_approval"
    assert [s for _, s in _outbox(data, tier2["account_id"])] == ["sent", "sent"]


def test_queue_groups_counts_and_filters(web: WebInboxProcess, data: Path) -> None:
    client = _client(web, "Filter")
    page = client.get("/").text
    assert re.search(r"\d+ drafts? waiting", page)
    assert "spring · Tier 1" in page and "spring · Tier 2" in page and "oldest" in page
    tier3 = client.get("/", params={"tier": "3"}).text
    assert "Shipyard Analytics" in tier3 and "Forkwise" not in tier3
    email = client.get("/", params={"channel": "email"}).text
    assert "Nothing is waiting for approval with these filters" in email
    flagged = client.get("/", params={"flagged": "yes"}).text
    waiting_flagged = [
        r for r in _ledger(data).values() if r["flagged"] and r["status"] == "waiting_for_approval"
    ]
    for r in waiting_flagged:
        assert f">#{r['id']}<" in flagged
    # A draft page keeps the filter for j/k and after a decision.
    first = client.get("/", params={"tier": "3"}).text
    m = re.search(r'href="/drafts/(\d+)\?tier=3"', first)
    assert m, first
    assert "?tier=3" in client.get(f"/drafts/{m.group(1)}", params={"tier": "3"}).text


def test_research_html_is_shown_inert(web: WebInboxProcess, data: Path) -> None:
    client = _client(web, "Inert")
    page = client.get(f"/drafts/{_ledger(data)['Pagewright']['id']}").text
    assert "&lt;img src=x onerror=" in page and "<img src=x" not in page
    leadlight = client.get(f"/drafts/{_ledger(data)['Leadlight']['id']}").text
    assert "<script>window.pwned" not in leadlight


# --------------------------------------------------------------------------- pure helpers


def test_marked_cuts_every_verbatim_occurrence_and_merges_overlaps() -> None:
    pieces = marked("Act NOW, act now! Limited time.", ["act now", "now!", ""])
    assert pieces == [("Act NOW, ", False), ("act now!", True), (" Limited time.", False)]
    # Found only in another case: it is still shown.
    assert marked("Act NOW.", ["act now"]) == [("Act NOW", True), (".", False)]
    # Whole words: "500" is not the end of "1500"; "We" is not every "we".
    assert marked("We saved 1500, then 500.", ["500", "We"]) == [
        ("We", True),
        (" saved 1500, then ", False),
        ("500", True),
        (".", False),
    ]
    assert marked("we and We", ["We"]) == [("we and ", False), ("We", True)]
    assert marked("plain", []) == [("plain", False)]


def test_only_http_sources_become_links() -> None:
    assert source_link("https://example.com/post") == "https://example.com/post"
    assert source_link("javascript:alert(1)") is None
    assert source_link("accounts.csv:4:signals") is None
    assert source_link("crm:company/12") is None


def test_filters_round_trip_and_ignore_junk() -> None:
    f = QueueFilters.parse({"tier": "2", "channel": "email", "flagged": "no", "campaign": "q4"})
    assert QueueFilters.parse(dict(x.split("=") for x in f.query().split("&"))) == f
    assert (
        QueueFilters.parse({"tier": "two", "channel": "fax", "flagged": "maybe"}) == QueueFilters()
    )


def test_ages_read_like_a_person_would_say_them() -> None:
    assert fmt_age(timedelta(minutes=5)) == "5m"
    assert fmt_age(timedelta(hours=3, minutes=2)) == "3h 2m"
    assert fmt_age(timedelta(days=2, hours=1)) == "2d 1h"
    assert fmt_age(None) == "–"


def _row(**over: Any) -> ThreadRow:
    base: dict[str, Any] = dict(
        id=1,
        campaign="c",
        account_id="a",
        thread_id="c:a",
        company="A",
        channel="linkedin",
        tier=2,
        status="waiting_for_approval",
        skip_reason=None,
        detail="",
        flagged=False,
        contact="",
        preview="",
        deciding=False,
        decided_by=None,
        decided_at=None,
        decision=None,
        waiting_since=datetime(2026, 1, 1, tzinfo=UTC),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return ThreadRow.model_validate({**base, **over})


def test_filters_keep_rows_by_tier_channel_flag_and_campaign() -> None:
    row = _row()
    assert QueueFilters(tier=2, channel="linkedin", flagged=False, campaign="c").keep(row)
    assert not QueueFilters(tier=1).keep(row)
    assert not QueueFilters(channel="email").keep(row)
    assert not QueueFilters(flagged=True).keep(row)
    assert not QueueFilters(campaign="other").keep(row)


def test_a_claim_is_taken_over_at_once_only_from_a_dead_process(tmp_path: Path) -> None:
    from gtm.app.ledger import Ledger
    from gtm.domain.models import Account

    ledger = Ledger(tmp_path / "ledger.sqlite")
    row = ledger.ensure("c", Account(account_id="a.io", company="A", domain="a.io"), "linkedin")
    ledger.update(row.thread_id, status="waiting_for_approval")
    assert ledger.claim(row.id, "first")
    assert not ledger.claim(row.id, "second")  # held by a live process (this one)
    assert ledger.busy(row.thread_id)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    ledger._db.execute(
        "UPDATE threads SET claim_owner = ? WHERE id = ?",
        (f"{socket.gethostname()}:{gone.pid}", row.id),
    )
    assert not ledger.busy(row.thread_id)
    assert ledger.claim(row.id, "second")
    assert not ledger.claim(row.id, "third")
    ledger.close()


def test_an_id_no_draft_can_have_is_a_404_not_a_500(web: WebInboxProcess) -> None:
    client = _client(web, "Prober")
    for ref in ("0", "9" * 19, "9" * 40):
        page = client.get(f"/drafts/{ref}")
        assert page.status_code == 404, (ref, page.status_code)
        posted = client.post(
            f"/drafts/{ref}/decide", data={"action": "approve", "csrf": _csrf(client)}
        )
        assert posted.status_code in (404, 409), (ref, posted.status_code, posted.text[:200])
