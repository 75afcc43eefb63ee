"""What a campaign's earlier actions cost each new account (issue 20, flat cost).

`bench_run.py` measures a first run: nothing has been sent, so the outbox is empty. A real
campaign grows: drafts are approved and sent, and the next `gtm run` of the same campaign (new
rows of the list, the next batch) checks every account against what the campaign already sent
(the same person reached through another row, a colleague who replied, the cooldowns), and each
follow-up asks which actions its thread sent. This runs the real CLI, as `bench_run.py` does, on
N new accounts of campaign "bench", once with an empty outbox and once with K sent actions of
the same campaign already in it (other accounts and people, a week or more old, so none of them
stops or delays the new accounts), and prints the gtm process's CPU per account of both runs
(start-up included) and their difference: what the grown outbox costs each account. The
difference is a few ms of noise either way when nothing grows; `bench/run_all.py` compares the
two per-account figures, whose ratios mean something.

Usage: .venv/bin/python bench/bench_outbox_growth.py [--accounts 200] [--sent 10000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for bench_run

from bench_run import ModelServer, _check, make_accounts, run_gtm  # noqa: E402

from tools.outbox import Outbox  # noqa: E402


def seeded(sent: int) -> Callable[[Path], None]:
    """A `run_gtm` seed writing `sent` sent LinkedIn connection requests of campaign "bench"
    into the data dir's outbox, each to its own person at its own account, 8 to 60 days old."""

    def seed(data: Path) -> None:
        start = datetime.now(UTC) - timedelta(days=60)
        at = [start]
        outbox = Outbox(data / "outbox.sqlite", clock=lambda: at[0])
        try:
            for i in range(sent):
                at[0] = start + timedelta(minutes=7 * i % (52 * 24 * 60))
                key = f"seed-{i}"
                outbox.reserve(
                    key=key,
                    campaign="bench",
                    account_id=f"seed-account-{i}",
                    contact_key=f"https://www.linkedin.com/in/seed-person-{i}",
                    step="linkedin_connect",
                    channel="linkedin",
                    sender="bench",
                )
                outbox.mark_sent(key, f"provider-{i}")
        finally:
            outbox.close()

    return seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--sent", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gtm-bench-outbox-"))
    try:
        csv = work / "accounts.csv"
        make_accounts(csv, args.accounts)
        cpu: dict[int, float] = {}
        for sent in (0, args.sent):
            t0 = time.monotonic()
            with ModelServer(0.0) as server:
                res = run_gtm(csv, server, args.concurrency, seed=seeded(sent))
            _check(res, args.accounts)
            cpu[sent] = res["cpu"]
            print(
                f"{args.accounts} new accounts, {sent} sent actions already in the campaign: "
                f"{res['cpu']:.2f} s of CPU ({res['wall']:.1f} s wall; "
                f"{time.monotonic() - t0:.1f} s with the seeding)"
            )
        extra = (cpu[args.sent] - cpu[0]) / args.accounts * 1000
        print(
            f"what {args.sent} earlier actions cost each new account: {extra:+.1f} ms of CPU "
            f"({cpu[0] / args.accounts * 1000:.1f} vs {cpu[args.sent] / args.accounts * 1000:.1f} "
            "ms per account, start-up included)"
        )
        print(
            "BENCH "
            + json.dumps(
                {
                    "bench": "outbox_growth",
                    "accounts": args.accounts,
                    "sent": args.sent,
                    "empty_cpu_ms_per_account": round(cpu[0] / args.accounts * 1000, 1),
                    "grown_cpu_ms_per_account": round(cpu[args.sent] / args.accounts * 1000, 1),
                    "extra_cpu_ms_per_account": round(extra, 1),
                }
            )
        )
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
