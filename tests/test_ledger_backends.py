"""The campaign ledger and the campaign book: one contract, SQLite and Postgres alike.

The contract is the existing tests of the SQLite ledger and book (the paged review queue of
`test_paging`, the redaction of `test_privacy_notes`, the prompt-variant rules of
`test_variants`), run here unchanged against both backends (their module's class is swapped for
the backend's for the length of one test), plus stories that call every method and compare the
two backends' answers value for value, plus the claims: two claimers, a stale claim, a dead
owner. The Postgres side runs on a real server (`tests.support.postgres`), a fresh database per
test. Races between threads and processes, and migration 0002, are in `test_ledger_pg.py`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tests.test_paging as paging_tests
import tests.test_privacy_notes as notes_tests
import tests.test_variants as variants_tests
from gtm.app.campaigns import CampaignBook, PlaybookMismatch
from gtm.app.ledger import Ledger
from gtm.app.ledger_api import CLAIM_TIMEOUT
from gtm.app.pg_campaigns import PgCampaignBook
from gtm.app.pg_ledger import PgLedger, pg_order, pg_sql
from gtm.domain.models import Decision
from gtm.domain.playbook import load_playbook
from tests.support.postgres import (  # noqa: F401
    PostgresServer,
    StoreBackend,
    backend_for,
    postgres_server,
)
from tests.test_graph import NOW, Clock
from tests.test_ledger_pg import account, dead_owner

Now = Callable[[], datetime]
_DEFAULT: Now = lambda: datetime.now(UTC)  # noqa: E731


class Backend(StoreBackend):
    """Opens ledgers and campaign books on one backend: one SQLite file in `tmp`, or one
    Postgres database. Two opened here share their data, as two processes would."""

    def ledger(self, clock: Now = _DEFAULT) -> Any:
        if self.db is None:
            self.opened.append(Ledger(self.tmp / "ledger.sqlite", clock))
        else:
            self.opened.append(PgLedger(self.db, clock))
        return self.opened[-1]

    def book(self, clock: Now = _DEFAULT) -> Any:
        if self.db is None:
            self.opened.append(CampaignBook(self.tmp / "ledger.sqlite", clock))
        else:
            self.opened.append(PgCampaignBook(self.db, clock))
        return self.opened[-1]

    def set_owner(self, row_id: int, owner: str) -> None:
        """Make the claim on `row_id` look taken by `owner` (another process)."""
        if self.db is None:
            led = Ledger(self.tmp / "ledger.sqlite")
            led._db.execute("UPDATE threads SET claim_owner = ? WHERE id = ?", (owner, row_id))
            led.close()
            return
        with self.db.connection() as conn:
            conn.execute("UPDATE threads SET claim_owner = %s WHERE id = %s", (owner, row_id))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    with backend_for(Backend, request, tmp_path) as b:
        yield b


def _swap(monkeypatch: pytest.MonkeyPatch, module: Any, b: Backend) -> None:
    """Point a test module's `Ledger` and `CampaignBook` at the backend (the path is ignored)."""
    for name, open_ in (("Ledger", b.ledger), ("CampaignBook", b.book)):
        if hasattr(module, name):
            monkeypatch.setattr(module, name, lambda _path, _o=open_, **kw: _o(**kw))


# ------------------------------------------------------------------ the existing contract tests


@pytest.mark.parametrize(
    "check",
    [
        paging_tests.test_every_draft_is_on_exactly_one_page_in_the_queues_order,
        paging_tests.test_filters_page_the_kept_drafts_and_count_them_all,
        paging_tests.test_neighbours_cross_pages_and_a_draft_not_in_the_queue_leads_to_the_first,
        paging_tests.test_oldest_first_pages_hold_every_waiting_draft_once,
    ],
    ids=lambda f: f.__name__.removeprefix("test_")[:40],
)
def test_the_paged_queue(
    check: Callable[[Any], None], backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """123 drafts over three campaigns, ties in waiting time, three being decided: the queue's
    pages, filters, neighbours and `gtm inbox`'s order, through `select` and `aggregate`."""
    _swap(monkeypatch, paging_tests, backend)
    paging_tests._seed_ledger(backend.tmp / "ledger.sqlite")
    check(backend.ledger())
    assert len(backend.opened) == 2, "the seed and the check both went through the backend"


def test_redact_notes_reaches_an_unapplied_decision(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _swap(monkeypatch, notes_tests, backend)
    notes_tests.test_redact_notes_reaches_an_unapplied_decision_and_only_the_threads_named(tmp_path)
    assert backend.opened


def test_a_campaign_keeps_its_variants(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Recorded once, refused when others are named, kept through an adoption and a reopen."""
    _swap(monkeypatch, variants_tests, backend)
    variants_tests.test_a_campaign_keeps_its_variants_and_refuses_others(tmp_path)
    assert len(backend.opened) == 2, "the book and its reopening went through the backend"


# --------------------------------------------------------------------------------- the claims


def test_one_claimer_at_a_time_a_stale_claim_and_a_dead_owner(backend: Backend) -> None:
    """Two reviewers (two ledgers on one store, as two processes): one holds the draft until it
    releases it, its claim lapses after `CLAIM_TIMEOUT`, or its process is gone."""
    clock = Clock(NOW)
    ann, bob = backend.ledger(clock), backend.ledger(clock)
    row = ann.ensure("c", account(1), "email")
    queued = ann.ensure("c", account(2), "email")
    assert not ann.claim(row.id, "ann"), "a queued thread waits for no decision"
    ann.update(row.thread_id, status="waiting_for_approval")
    assert ann.claim(row.id, "ann")
    assert not bob.claim(row.id, "bob") and not ann.claim(row.id, "ann again")
    assert bob.busy(row.thread_id) and not bob.busy(queued.thread_id)
    ann.release(row.id)
    assert not bob.busy(row.thread_id)
    assert bob.claim(row.id, "bob") and not ann.claim(row.id, "ann")

    clock.t = NOW + CLAIM_TIMEOUT - timedelta(seconds=1)
    assert not ann.claim(row.id, "ann") and ann.busy(row.thread_id)
    clock.t = NOW + CLAIM_TIMEOUT + timedelta(seconds=1)  # bob's process went quiet: lapsed
    assert not ann.busy(row.thread_id)
    assert ann.claim(row.id, "ann") and not bob.claim(row.id, "bob")

    backend.set_owner(row.id, dead_owner())  # ann's process was killed mid-decision
    assert not bob.busy(row.thread_id)
    assert bob.claim(row.id, "bob"), "a dead owner's claim is taken over at once"
    assert not ann.claim(row.id, "ann"), "and only once"
    backend.set_owner(row.id, "another-host.example:1")  # we cannot tell: alive until timeout
    assert not ann.claim(row.id, "ann") and ann.busy(row.thread_id)

    bob.update(row.thread_id, status="sent")  # decided and applied: the claim is gone with it
    assert not ann.busy(row.thread_id) and not ann.claim(row.id, "ann")
    assert not ann.claim(10**6, "ann"), "no such draft"


# ------------------------------------------------------------------ every method, both alike


def ledger_story(led: Any, clock: Clock) -> list[Any]:
    """Every ledger method, what each answered, as plain data."""
    seen: list[Any] = []
    tiers = (2, None, 1, None, 3)
    rows = []
    for i, campaign in enumerate(("beta", "Zeta", "alpha", "beta", "alpha")):
        clock.t = NOW + timedelta(minutes=i % 3)  # rows 0 and 3 share a time
        variant = "1" if i % 2 else None
        rows.append(
            led.ensure(campaign, account(i), "email" if i % 2 else "linkedin", variant=variant)
        )
    again = led.ensure("beta", account(0), "email", variant="2")  # a resumed run: nothing drawn
    seen.append((again == rows[0], again.variant, again.channel))
    second = led.ensure("beta", account(0), "linkedin", slot=1)  # the account's next person
    seen.append((second.id, second.thread_id != rows[0].thread_id))
    for i, r in enumerate(rows):
        clock.t = NOW + timedelta(minutes=10 + i % 2)
        led.update(
            r.thread_id,
            status="waiting_for_approval" if i < 4 else "skipped",
            tier=tiers[i],
            skip_reason="no contact" if i == 4 else None,
            detail="100% sure?" if i == 4 else "",
            flagged=i == 1,
            contact="Dana Ruiz, CTO" if i == 0 else None,
            preview=f"draft {i}",
        )
    clock.t = NOW + timedelta(hours=1)
    led.update(rows[0].thread_id, status="waiting_for_approval")  # still waiting: since kept
    seen.append(led.get(rows[0].thread_id))
    led.set_sequence(rows[2].thread_id, position=1, next_due=NOW + timedelta(days=3))
    seen.append(led.get(rows[2].id))
    seen.append(led.stop_sequence(rows[2].id, "replied"))
    seen.append(led.stop_sequence(str(rows[2].id), "opted out"))  # the first reason stays
    seen.append(led.stop_sequence("no-such-thread", "x"))

    ask = Decision(action="regenerate", instructions="drop Dana", reviewer="ann", at=clock.t)
    led.record_decision(rows[1].id, decision=ask, interrupt_id="i1")
    later = clock.t + timedelta(minutes=1)
    ok = Decision(action="approve", text="Hi Dana", reviewer="bob", at=later)
    led.record_decision(rows[1].id, decision=ok, interrupt_id="i2")
    seen += [led.pending(rows[1].thread_id), led.pending(rows[0].thread_id)]
    seen += [led.history(rows[1].thread_id), led.recently_decided(5)]
    seen.append(led.redact_notes([rows[1].thread_id], lambda t: t.replace("Dana", "[erased]")))
    seen += [led.history(rows[1].thread_id), led.pending(rows[1].thread_id)]
    seen += [led.forget_history(rows[1].thread_id), led.history(rows[1].thread_id)]

    seen.append([r.id for r in led.rows()])
    seen.append([r.id for r in led.rows(campaign="beta", status="waiting_for_approval")])
    seen.append([r.id for r in led.select("status = ?", ["waiting_for_approval"], order="tier")])
    seen.append([r.id for r in led.select(order="tier DESC, id DESC")])
    seen.append([r.id for r in led.select("campaign != ?", ["x"], order="campaign, id", limit=2)])
    seen.append([r.id for r in led.select("id > ?", [1], limit=2, offset=2)])
    seen.append(
        led.aggregate("status, skip_reason, COUNT(*), SUM(flagged)", group_by="status, skip_reason")
    )
    seen.append(
        led.aggregate(
            "campaign, COALESCE(tier, 0), COUNT(*), MIN(COALESCE(waiting_since, updated_at))",
            "status = ?",
            ["waiting_for_approval"],
            group_by="campaign, COALESCE(tier, 0)",
        )
    )
    seen.append(led.aggregate("variant, COUNT(*)", "campaign = ?", ["beta"], group_by="variant"))
    seen.append(led.aggregate("COUNT(*)", "detail = '100% sure?' AND preview != ?", ["?"]))
    seen.append(led.campaigns())
    seen.append([led.get(ref) for ref in (0, "0", "9" * 19, "9" * 40, "nope")])
    led.compact()
    seen.append(led.get(rows[4].thread_id))
    return seen


def test_every_ledger_method_answers_alike(tmp_path: Path, backend: Backend) -> None:
    clock = Clock(NOW)
    story = ledger_story(backend.ledger(clock), clock)
    ref_clock = Clock(NOW)
    reference = Ledger(tmp_path / "reference.sqlite", ref_clock)
    assert story == ledger_story(reference, ref_clock)
    reference.close()
    # and what it says is right, not only alike:
    assert story[0] == (True, None, "linkedin")  # ensure changed nothing of the first row
    assert story[1] == (7, True)  # as on SQLite, the ensure that found its row used an id
    first = story[2]
    assert first.waiting_since == NOW + timedelta(minutes=10) and first.tier == 2
    assert (first.contact, first.preview) == ("Dana Ruiz, CTO", "draft 0")
    assert story[3].next_due == NOW + timedelta(days=3) and story[3].seq_pos == 1
    assert story[4].seq_stopped == story[5].seq_stopped == "replied" and story[4].next_due is None
    assert story[6] is None
    pending, none, history, recent, redacted, after, still, forgot, gone = story[7:16]
    assert pending[0].action == "approve" and pending[1] == "i2" and none is None
    assert [(h.action, h.note) for h in history] == [("regenerate", "drop Dana"), ("approve", "")]
    assert [r.id for r in recent] == [2] and recent[0].deciding
    assert redacted == 2  # the regenerate's note, and the pending approval's text
    assert after[0].note == "drop [erased]" and still[0].text == "Hi [erased]"
    assert forgot == 2 and gone == []
    assert story[16] == [1, 2, 3, 4, 5, 7] and story[17] == [1, 4]
    assert story[18] == [2, 4, 3, 1], "NULL tiers first, as SQLite sorts"
    assert story[19] == [5, 1, 3, 7, 4, 2], "NULL tiers last when descending"
    assert story[20] == [2, 3], "byte order: 'Zeta' before 'alpha'"
    assert story[21] == [4, 5]
    assert story[22] == [
        ("queued", None, 1, 0),
        ("skipped", "no contact", 1, 0),
        ("waiting_for_approval", None, 4, 1),
    ]
    since = (NOW + timedelta(minutes=10)).isoformat()
    assert story[23][0] == ("Zeta", 0, 1, (NOW + timedelta(minutes=11)).isoformat())
    assert ("beta", 2, 1, since) in story[23]
    assert story[24] == [(None, 2), ("1", 1)]
    assert story[25] == [(1,)]
    assert story[26] == ["Zeta", "alpha", "beta"]
    assert story[27] == [None] * 5
    assert story[28] is not None and story[28].skip_reason == "no contact"


def book_story(book: Any, clock: Clock) -> list[Any]:
    """Every campaign-book rule once: record, keep, refuse, adopt."""
    pb = load_playbook()
    other = pb.model_copy(update={"version": "2", "source": "other.yaml"})
    seen: list[Any] = [book.get("fall"), book.planned_variants("fall", ["1", "2"])]
    seen.append(book.resolve("fall", pb, explicit=False, adopt=False, variants=("1", "2"), seed=7))
    seen.append(book.resolve("fall", pb, explicit=True, adopt=False) == pb)
    with pytest.raises(PlaybookMismatch) as refused:
        book.resolve("fall", other, explicit=True, adopt=False)
    seen.append(str(refused.value))
    seen.append(book.resolve("fall", other, explicit=False, adopt=False) == pb)
    clock.t = NOW + timedelta(hours=1)
    seen.append(book.resolve("fall", other, explicit=True, adopt=True).version)
    seen += [book.get("fall"), book.planned_variants("fall", None)]
    seen.append(book.resolve("plain", pb, explicit=False, adopt=False) == pb)
    seen.append(book.get("plain"))
    return seen


def test_every_campaign_book_rule_answers_alike(tmp_path: Path, backend: Backend) -> None:
    clock = Clock(NOW)
    story = book_story(backend.book(clock), clock)
    ref_clock = Clock(NOW)
    reference = CampaignBook(tmp_path / "reference.sqlite", ref_clock)
    assert story == book_story(reference, ref_clock)
    reference.close()
    assert story[0] is None and story[1] == ("1", "2")
    assert "runs under the playbook it was started with" in story[4]
    assert story[3] is story[5] is True and story[6] == "2"
    adopted = story[7]
    assert adopted.recorded_at == NOW and adopted.adopted_at == NOW + timedelta(hours=1)
    assert adopted.variants.versions == ("1", "2") and adopted.variants.seed == 7
    assert adopted.source == "other.yaml" and story[8] == ("1", "2")
    assert story[10].variants is None and story[10].adopted_at is None
    # another process (a second book on the same store) reads what this one recorded
    assert backend.book().get("fall") == adopted


def test_both_backends_have_the_same_methods() -> None:
    """Same public methods, same signatures: code written against one runs on the other.
    Only the constructor differs (a file path there, a database here)."""

    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")
        }

    assert public(PgLedger) == public(Ledger)
    assert public(PgCampaignBook) == public(CampaignBook)


def test_sqlite_placeholders_and_null_order_are_translated() -> None:
    assert pg_sql("a = ? AND b = '?' AND c = \"x?\" AND d LIKE '5%'") == (
        "a = %s AND b = '?' AND c = \"x?\" AND d LIKE '5%%'"
    )
    assert pg_order(
        "campaign, (CASE WHEN COALESCE(tier, 0) = 0 THEN 99 ELSE tier END), id DESC"
    ) == (
        "campaign NULLS FIRST, (CASE WHEN COALESCE(tier, 0) = 0 THEN 99 ELSE tier END) NULLS FIRST,"
        " id DESC NULLS LAST"
    )
    assert pg_order("a NULLS LAST, b ASC") == "a NULLS LAST, b ASC NULLS FIRST"
