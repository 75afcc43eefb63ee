"""One way to open the local SQLite stores, safe for several processes on one file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

__all__ = ["connect", "where"]


def connect(path: Path | str, schema: str = "") -> sqlite3.Connection:
    """Autocommit connection with WAL, a 30 s busy timeout and named rows; creates `schema`."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    db.row_factory = sqlite3.Row
    if str(path) != ":memory:":
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=30000")
    if schema:
        db.executescript(schema)
    return db


def where(**filters: Any) -> tuple[str, list[Any]]:
    """` WHERE a = ? AND b = ?` for the filters that are not None (or an empty clause)."""
    used = {k: v for k, v in filters.items() if v is not None}
    if not used:
        return "", []
    return " WHERE " + " AND ".join(f"{k} = ?" for k in used), list(used.values())
