"""The web inbox with several people per account: both people's drafts of one account are
listed and shown, approving the second person's sends to that person only, and the queue and
the thread pages say where each thread stands.

In process: the campaign is run on the real stores with the scripted OpenAI-compatible writer
on loopback, then the inbox app is driven with Starlette's TestClient (signed in, CSRF tokens
read from the pages), its decision worker sending through the local email twin.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gtm.app.accounts import load_accounts
from gtm.app.ledger import ThreadRow
from gtm.app.runner import run_campaign
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.playbook import load_playbook
from tests.support.openai_server import ScriptedOpenAIServer
from tests.test_multi_contact import CAMPAIGN, HEADER, LEAD, ROWS, VP, A, B, _by_person
from tests.test_sequence_views import _csrf, client  # noqa: F401 (the signed-in client fixture)


@dataclass
class Seeded:
    data: Path
    lena: ThreadRow
    omar: ThreadRow
    bodies: dict[str, str]


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    csv = tmp_path / "accounts.csv"
    csv.write_text(HEADER + "\n" + "\n".join(ROWS) + "\n", encoding="utf-8")
    data = tmp_path / "data"
    pb = load_playbook().model_copy(update={"contacts_per_account": 2})

    async def go(url: str) -> Seeded:
        settings = Settings(data_dir=data, model_base_url=url, model="x")
        async with open_workspace(settings, with_model=True, playbook=pb) as rt:
            listing = load_accounts(csv)
            assert not listing.errors, listing.errors
            summary = await run_campaign(rt, listing.accounts, campaign=CAMPAIGN, channel="email")
            assert not summary.failures, summary.failures
            lena, omar = rt.ledger.get(A), rt.ledger.get(B)
            assert lena is not None and omar is not None
            assert lena.status == omar.status == "waiting_for_approval"
            bodies = {}
            for tid in (A, B):
                snap = await rt.graph.aget_state({"configurable": {"thread_id": tid}})
                bodies[tid] = snap.values["draft"].body
            return Seeded(data, lena, omar, bodies)

    with ScriptedOpenAIServer(responder=_by_person) as server:
        yield asyncio.run(go(server.base_url))


def _waiting_rows(page: str) -> dict[int, str]:
    """The queue's waiting drafts: id → the row's text."""
    found = re.findall(r'<tr class="row[^"]*" data-id="(\d+)"[^>]*>(.*?)</tr>', page, re.S)
    return {int(i): " ".join(re.sub(r"<[^>]+>", " ", body).split()) for i, body in found}


def _text(page: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", page).split())


def _sent(data: Path) -> list[str]:
    async def go() -> list[str]:
        async with open_workspace(Settings(data_dir=data), with_model=False) as rt:
            return [
                e.touch.recipient or ""
                for e in rt.deps.outbox.entries(campaign=CAMPAIGN)
                if e.state == "sent"
            ]

    return asyncio.run(go())


def test_both_people_are_listed_shown_and_only_the_second_is_approved_and_sent(
    seeded: Seeded,
    client: TestClient,  # noqa: F811 (the imported fixture)
) -> None:
    lena, omar = seeded.lena, seeded.omar
    queue = client.get("/")
    assert queue.status_code == 200
    rows = _waiting_rows(queue.text)
    assert {lena.id, omar.id} <= set(rows), rows
    assert "Lena Ruiz" in rows[lena.id] and "Omar Haddad" in rows[omar.id]
    assert "Signalry" in rows[lena.id] and "Signalry" in rows[omar.id]

    pages = {}
    for row, name, email in ((lena, "Lena Ruiz", LEAD), (omar, "Omar Haddad", VP)):
        shown_page = client.get(f"/drafts/{row.id}")
        assert shown_page.status_code == 200
        shown = _text(shown_page.text)
        assert f"{name}, " in shown and email in shown
        pages[row.id] = shown_page.text
    # Each page shows its own person's draft and not the colleague's.
    assert _text(seeded.bodies[A]) in _text(pages[lena.id])
    assert _text(seeded.bodies[B]) in _text(pages[omar.id])
    assert _text(seeded.bodies[B]) not in _text(pages[lena.id])
    assert _text(seeded.bodies[A]) not in _text(pages[omar.id])

    r = client.post(
        f"/drafts/{omar.id}/decide",
        data={"action": "approve", "csrf": _csrf(pages[omar.id]), "confirm": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    # The worker sends in the background: wait for the thread page to say so.
    deadline, state, page = time.monotonic() + 60, "", ""
    while state != "sent":
        assert time.monotonic() < deadline, f"still {state!r}"
        time.sleep(0.2)
        page = client.get(f"/drafts/{omar.id}").text
        m = re.search(r'<p id="state">This draft is <strong>([^<]+)</strong>', page)
        state = m.group(1) if m and "being applied" not in page else ""
    assert "Decided (approve) by <strong>rita</strong>" in page

    again = client.get("/")
    waiting = _waiting_rows(again.text)
    assert lena.id in waiting and omar.id not in waiting
    # A second approval of the sent draft is refused; Lena's draft is still waiting.
    refused = client.post(
        f"/drafts/{omar.id}/decide",
        data={"action": "approve", "csrf": _csrf(again.text), "confirm": "yes"},
        follow_redirects=False,
    )
    assert refused.status_code in (409, 422), refused.status_code
    lena_page = client.get(f"/drafts/{lena.id}")
    assert lena_page.status_code == 200
    assert 'name="action" value="approve"' in lena_page.text  # still decidable
    assert _sent(seeded.data) == [VP]  # one send, to Omar only
