"""The outbox keeps, beside each action's key, whom it went to and how it was judged: what
events are matched by and what the funnel is broken down by."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from gtm.domain.models import TouchFacts
from tools.outbox import Outbox

T = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
URL = "https://www.linkedin.com/in/maya-chen"

OLD_SCHEMA = """
CREATE TABLE outbox (
    key TEXT PRIMARY KEY, campaign TEXT NOT NULL, account_id TEXT NOT NULL,
    contact_key TEXT NOT NULL, step TEXT NOT NULL, channel TEXT NOT NULL, sender TEXT NOT NULL,
    state TEXT NOT NULL, provider_id TEXT, error TEXT, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


def _reserve(box: Outbox, key: str, touch: TouchFacts | None) -> None:
    got = box.reserve(
        key=key,
        campaign="fall",
        account_id="signalry.io",
        contact_key="maya@signalry.io",
        step="linkedin_connect",
        channel="linkedin",
        sender="seat-1",
        touch=touch,
    )
    assert got.created


def test_the_touch_is_kept_with_the_row_and_an_erasure_forgets_the_address(
    tmp_path: Path,
) -> None:
    box = Outbox(tmp_path / "outbox.sqlite", clock=lambda: T)
    facts = TouchFacts(
        recipient=URL,
        position=1,
        tier=1,
        prompt_version="personalize_linkedin_message@2",
        genericness=0.25,
        verdict="findings",
    )
    _reserve(box, "k1", facts)
    _reserve(box, "k2", None)
    entry = box.get("k1")
    assert entry is not None and entry.touch == facts
    assert box.get("k2") is not None and box.get("k2").touch == TouchFacts()  # type: ignore[union-attr]

    # erasing by the profile URL forgets the address; by the email, the key too
    assert box.erase_contact(URL, "erased-1") == 1
    entry = box.get("k1")
    assert entry is not None and entry.touch.recipient is None
    assert entry.contact_key == "maya@signalry.io" and entry.touch.tier == 1
    assert box.erase_contact("maya@signalry.io", "erased-1") == 2
    assert {e.contact_key for e in box.entries()} == {"erased-1"}
    box.close()


def test_an_outbox_written_before_touches_were_kept_gains_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.execute(
        "INSERT INTO outbox VALUES ('old', 'fall', 'a.io', 'x@a.io', 'email', 'email', 'me',"
        " 'sent', '<m1@a.io>', NULL, ?, ?)",
        (T.isoformat(), T.isoformat()),
    )
    db.commit()
    db.close()
    first, second = Outbox(path), Outbox(path)  # the second open finds the columns added
    old = first.get("old")
    assert old is not None and old.state == "sent" and old.touch == TouchFacts()
    _reserve(second, "new", TouchFacts(recipient=URL, tier=2))
    new = first.get("new")
    assert new is not None and new.touch.recipient == URL and new.touch.tier == 2
    first.close()
    second.close()
