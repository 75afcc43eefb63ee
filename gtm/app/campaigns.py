"""A campaign's standing: the playbook it was started with, and the one process running it.

A campaign keeps the playbook it was started with: its caps, tiers and guardrails hold for every
later command (`gtm run` again, `approve`, the web inbox) whatever playbook those are given,
unless the user adopts a new one on purpose (`gtm run --adopt-playbook`). Two `gtm run`s of one
campaign at once would race for the same accounts, so a run holds the campaign's lock and a
second one refuses with a clear message.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict

from gtm.domain.playbook import Playbook
from tools.sqlite import connect

__all__ = [
    "CampaignBook",
    "CampaignBusy",
    "CampaignRecord",
    "PlaybookMismatch",
    "campaign_lock",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    name TEXT PRIMARY KEY,
    playbook TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    source TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    adopted_at TEXT
);
"""


class PlaybookMismatch(ValueError):
    """A command names a playbook other than the one its campaign runs under."""


class CampaignBusy(RuntimeError):
    """Another process is running this campaign right now."""


class CampaignRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    playbook: Playbook
    source: str
    recorded_at: datetime
    adopted_at: datetime | None

    @property
    def fingerprint(self) -> str:
        return self.playbook.fingerprint


class CampaignBook:
    """The campaigns table, in the ledger's SQLite file."""

    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._db = connect(path, _SCHEMA)
        self._clock = clock
        self._cache: dict[str, CampaignRecord | None] = {}

    def close(self) -> None:
        self._db.close()

    def get(self, name: str) -> CampaignRecord | None:
        if name not in self._cache:
            row = self._db.execute("SELECT * FROM campaigns WHERE name = ?", (name,)).fetchone()
            self._cache[name] = _record(row) if row is not None else None
        return self._cache[name]

    def resolve(self, name: str, given: Playbook, *, explicit: bool, adopt: bool) -> Playbook:
        """The playbook `name` runs under, recording it the first time.

        `given` is what this command was started with; `explicit` says the user named it (a
        file, not the shipped default). A campaign with a record keeps its playbook; an
        explicit, different one is refused unless `adopt`.
        """
        record = self.get(name)
        if record is None:
            self._write(name, given, adopted=False)
            return given
        if record.fingerprint == given.fingerprint:
            return record.playbook
        if adopt:
            self._write(name, given, adopted=True)
            return given
        if explicit:
            raise PlaybookMismatch(
                f"campaign {name!r} runs under the playbook it was started with "
                f"({record.source or 'the shipped default'}, {record.fingerprint[:12]}, recorded "
                f"{record.recorded_at:%Y-%m-%d %H:%M} UTC); {given.source or 'this one'} "
                f"({given.fingerprint[:12]}) differs, so caps, tiers and guardrails would change "
                "mid-campaign. Leave out --playbook to keep the campaign's, or pass "
                "--adopt-playbook to switch the campaign to this one."
            )
        return record.playbook

    def _write(self, name: str, playbook: Playbook, *, adopted: bool) -> None:
        now = self._clock().isoformat()
        self._db.execute(
            "INSERT INTO campaigns (name, playbook, fingerprint, source, recorded_at, adopted_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET playbook = excluded."
            "playbook, fingerprint = excluded.fingerprint, source = excluded.source, "
            "adopted_at = excluded.adopted_at",
            (
                name,
                playbook.as_json(),
                playbook.fingerprint,
                playbook.source,
                now,
                now if adopted else None,
            ),
        )
        self._cache.pop(name, None)


def _record(row: sqlite3.Row) -> CampaignRecord:
    playbook = Playbook.model_validate_json(row["playbook"]).model_copy(
        update={"source": row["source"]}
    )
    adopted = row["adopted_at"]
    return CampaignRecord(
        name=row["name"],
        playbook=playbook,
        source=row["source"],
        recorded_at=datetime.fromisoformat(row["recorded_at"]),
        adopted_at=datetime.fromisoformat(adopted) if adopted else None,
    )


@contextlib.contextmanager
def campaign_lock(data_dir: Path, name: str) -> Iterator[None]:
    """Hold `name`'s run lock for the duration; `CampaignBusy` if another process holds it.

    The lock is the operating system's (released when the holder dies, even by SIGKILL); a
    note beside it says who holds it, for the message a second run prints.
    """
    folder = data_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^\w.-]", "_", name)[:80] or "_"
    lock = FileLock(folder / f"{stem}.lock", timeout=0)
    holder = folder / f"{stem}.holder"
    try:
        lock.acquire()
    except Timeout:
        who = holder.read_text(encoding="utf-8").strip() if holder.exists() else "another process"
        raise CampaignBusy(
            f"campaign {name!r} is already running ({who}); wait for it to finish, or stop it "
            "(Ctrl-C is safe), then run it again"
        ) from None
    try:
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        holder.write_text(
            f"pid {os.getpid()} on {socket.gethostname()}, since {started}", encoding="utf-8"
        )
        yield
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        lock.release()
