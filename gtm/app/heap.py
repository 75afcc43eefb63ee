"""Keep a long `gtm run`'s memory from growing with the accounts it has done (issue 20).

What grew was not live data but glibc's malloc holding freed memory. Measured with
`bench/bench_run.py`'s scripted server at zero model latency: through a 1,500-account run the
Python objects stayed at about 275,000 (a gc census every 15 s), and memray's peak of a
1,000-account run held no growing structure of ours but the draft index (about 3 KB per draft),
while RSS grew 47 KB per account. Each of the run's threads (`asyncio.to_thread`'s workers,
aiosqlite's, Chroma's, the embedding's) gets a malloc arena of its own, up to 8 per core, and
each keeps the pages its freed blocks leave. Two arenas and a `malloc_trim` every 10 s brought
the growth to 16-18 KB per account and the RSS during that run from 423-477 MB to 359-375 MB;
2,000 accounts peaked at 431 MB, not 538.

Only on glibc; elsewhere these do nothing. A `MALLOC_ARENA_MAX` set in the environment wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import platform
from collections.abc import AsyncIterator
from functools import cache
from typing import Any

__all__ = ["ARENAS", "TRIM_EVERY", "limit_arenas", "trim", "trimming"]

ARENAS = 2
"""Malloc arenas for the whole process: threads share them instead of fragmenting one each."""

TRIM_EVERY = 10.0
"""Seconds between trims during a run. A trim walks the free memory of every arena: about 30 ms
of CPU on a fragmented 350 MB heap, so 0.3% of a core at this pace."""

_M_ARENA_MAX = -8  # glibc's malloc.h


@cache
def _libc() -> Any | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@cache
def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas` from now on, once per process (threads that
    already have an arena keep it); False where it does not apply or the environment set it."""
    libc = _libc()
    if libc is None or "MALLOC_ARENA_MAX" in os.environ:
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, arenas))


def trim() -> bool:
    """Hand the free pages of every malloc arena back to the system; True if any were."""
    libc = _libc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


@contextlib.asynccontextmanager
async def trimming(every: float = TRIM_EVERY) -> AsyncIterator[None]:
    """Trim in a worker thread every `every` seconds while the block runs."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            await asyncio.to_thread(trim)

    task = asyncio.create_task(loop()) if _libc() is not None else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
