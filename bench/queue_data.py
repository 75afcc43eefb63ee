"""A data directory with N drafts waiting for approval, each with a real paused checkpoint.

A handful of drafts are made by the real pipeline (research → personalize → review → approve)
against the scripted OpenAI-compatible server of the tests; their latest checkpoints and
pending writes, the approval interrupt among them, are then copied under N new thread ids with
ledger rows of their own (3 campaigns, tiers 1-3, both channels, a fifth flagged), so `gtm
inbox` finds a real paused thread behind every row without running the pipeline N times.

Used by `bench_inbox.py`; `python bench/queue_data.py DIR [N]` seeds DIR for trying by hand.
"""

from __future__ import annotations

import random
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.support

from gtm.domain.threads import thread_id_for  # noqa: E402
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts  # noqa: E402
from tests.support.web import WEB_ACCOUNTS, seed  # noqa: E402

CAMPAIGNS = ("q4-launch", "q4-nurture", "reactivation")


def seed_pending(data: Path, n: int) -> None:
    """Fill `data` with `n` pending drafts (the seeded originals are removed)."""
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        seed(data, srv.base_url, [("seed", "linkedin", WEB_ACCOUNTS)])
    rng = random.Random(7)
    ledger = sqlite3.connect(data / "ledger.sqlite")
    ledger.row_factory = sqlite3.Row
    cps = sqlite3.connect(data / "checkpoints.sqlite")
    originals = ledger.execute(
        "SELECT * FROM threads WHERE status = 'waiting_for_approval' ORDER BY id"
    ).fetchall()
    if not originals:
        raise RuntimeError("the seeded campaign left no draft waiting")
    latest = {
        o["thread_id"]: cps.execute(
            "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ''"
            " ORDER BY checkpoint_id DESC LIMIT 1",
            (o["thread_id"],),
        ).fetchone()[0]
        for o in originals
    }
    copies = {  # every column as it is, the thread id replaced
        table: f"INSERT INTO {table} SELECT "
        + ", ".join(
            "?" if c[1] == "thread_id" else c[1] for c in cps.execute(f"PRAGMA table_info({table})")
        )
        + f" FROM {table} WHERE thread_id = ? AND checkpoint_id = ?"
        for table in ("checkpoints", "writes")
    }
    start = datetime.now(UTC) - timedelta(days=3)
    ledger.execute("BEGIN")
    cps.execute("BEGIN")
    for i in range(n):
        src = originals[i % len(originals)]
        campaign = CAMPAIGNS[i % 3]
        account_id = f"acct-{i:05d}"
        tid = thread_id_for(campaign, account_id)
        at = (start + timedelta(seconds=20 * i)).isoformat()
        ledger.execute(
            "INSERT INTO threads (campaign, account_id, thread_id, company, channel, tier,"
            " status, detail, flagged, waiting_since, contact, preview, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'waiting_for_approval', '', ?, ?, ?, ?, ?, ?)",
            (
                campaign,
                account_id,
                tid,
                f"Company {i:05d}",
                "email" if campaign == "q4-nurture" else "linkedin",
                rng.choice((1, 2, 2, 3, 3)),
                int(rng.random() < 0.2),
                at,
                src["contact"],
                src["preview"],
                at,
                at,
            ),
        )
        cid = latest[src["thread_id"]]
        for table in ("checkpoints", "writes"):
            cps.execute(copies[table], (tid, src["thread_id"], cid))
    ledger.execute("DELETE FROM threads WHERE campaign = 'seed'")
    ledger.execute("COMMIT")
    cps.execute("COMMIT")
    ledger.close()
    cps.close()


if __name__ == "__main__":
    seed_pending(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 10_000)
