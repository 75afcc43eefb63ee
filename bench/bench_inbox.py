"""Render the web inbox's queue with N pending drafts (default 1,000); print server-side times.

The queue reads only the ledger (never a checkpoint), so the drafts are written to the ledger
with the same calls the runner makes when a thread pauses for approval: 3 campaigns, tiers 1-3,
both channels, a fifth of them flagged. The real app is served by uvicorn on loopback and asked
over HTTP, signed in like a reviewer. "server" is the app's own Server-Timing figure (routing,
ledger query, grouping and the template); "wall" adds HTTP on loopback and the client.

.venv/bin/python bench/bench_inbox.py [N] [ROUNDS]
"""

from __future__ import annotations

import random
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from gtm.app.ledger import Ledger
from gtm.app.settings import Settings
from gtm.domain.models import Account
from gtm.web import create_app

TARGET_MS = 300.0


def seed_ledger(path: Path, n: int) -> None:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(days=3)
    clock_at = [start]
    ledger = Ledger(path, clock=lambda: clock_at[0])
    for i in range(n):
        campaign = ("q4-launch", "q4-nurture", "reactivation")[i % 3]
        channel = "email" if campaign == "q4-nurture" else "linkedin"
        account = Account(
            account_id=f"acct-{i:04d}",
            company=f"Company {i:04d}",
            domain=f"company{i:04d}.example",
        )
        clock_at[0] = start + timedelta(minutes=4 * i)
        row = ledger.ensure(campaign, account, channel)
        ledger.update(
            row.thread_id,
            status="waiting_for_approval",
            tier=rng.choice((1, 2, 2, 3, 3)),
            flagged=rng.random() < 0.2,
            contact=rng.choice(["Dana Ruiz, VP Engineering", "Omar Haddad, Principal Engineer"]),
            preview=(
                f"Hi there, I read that Company {i:04d} indexes {rng.randint(2, 90)} million "
                "documents and is hiring a search relevance lead. Curious how you handle "
                "permissions-aware retrieval at that scale."
            )[:140],
        )
    ledger.close()


def main(n: int = 1000, rounds: int = 30) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        t0 = time.perf_counter()
        seed_ledger(data / "ledger.sqlite", n)
        print(f"seeded {n} pending drafts in {time.perf_counter() - t0:.1f} s")

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = create_app(Settings(data_dir=data), token="bench-token")
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            deadline = time.monotonic() + 60
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            client.post("/login", data={"token": "bench-token", "reviewer": "bench"})
            for label, params in (("all", {}), ("tier=2", {"tier": "2"})):
                server_ms, wall_ms = [], []
                size = 0
                for i in range(rounds + 3):
                    t = time.perf_counter()
                    r = client.get("/", params=params)
                    wall = (time.perf_counter() - t) * 1000
                    r.raise_for_status()
                    if i < 3:
                        continue  # warm-up: first template compile, SQLite page cache
                    size = len(r.content)
                    wall_ms.append(wall)
                    server_ms.append(float(r.headers["server-timing"].split("dur=")[1]))
                rows = r.text.count('class="row')
                print(
                    f"queue [{label}] {rows} rows, {size / 1024:.0f} KiB: server median "
                    f"{statistics.median(server_ms):.1f} ms, p95 "
                    f"{sorted(server_ms)[int(0.95 * len(server_ms)) - 1]:.1f} ms, max "
                    f"{max(server_ms):.1f} ms; wall median {statistics.median(wall_ms):.1f} ms"
                )
                verdict = "within" if max(server_ms) < TARGET_MS else "OVER"
                print(f"  {verdict} the {TARGET_MS:.0f} ms target (max of {rounds} rounds)")
        server.should_exit = True
        thread.join(timeout=30)


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
