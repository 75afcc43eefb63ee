"""Flat cost of a `gtm run`: what the first and the last accounts of one run cost (issue 20).

Used by bench_run.py, whose docstring says what is measured: the gtm process's CPU, sampled from
/proc/PID/stat while it runs, and the scripted model server's request/answer times, grouped by
account and split into the first and the last min(1,000, N/10) accounts.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any


class CpuSampler:
    """The child's user+system CPU seconds (all its threads) every `every` seconds, from
    /proc/PID/stat, as (monotonic time, seconds) pairs, and its resident memory in MB from
    /proc/PID/statm as (monotonic time, MB) pairs; empty where /proc is missing. `threads` holds
    the same CPU per thread name (/proc/PID/task/*/stat, summed by `comm`: Python's threads are
    all "python"; chromadb's Rust runtime runs "tokio-rt-worker" and "sqlx-sqlite-wor"), so a
    slice's cost can be told apart by who spent it. A thread that ended takes its CPU with it
    from these sums, not from the total."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.samples: list[tuple[float, float]] = []
        self.rss: list[tuple[float, float]] = []
        self.threads: list[tuple[float, dict[str, float]]] = []
        self._tasks = Path(f"/proc/{pid}/task")
        self._path = Path(f"/proc/{pid}/stat")
        self._statm = Path(f"/proc/{pid}/statm")
        self._page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
        self._every = every
        self._tick = os.sysconf("SC_CLK_TCK")
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self, path: Path | None = None) -> float:
        fields = (path or self._path).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime (fields 14, 15)

    def _per_thread(self) -> dict[str, float]:
        spent: dict[str, float] = {}
        for task in self._tasks.iterdir():
            try:
                name = (task / "comm").read_text().strip()
                spent[name] = spent.get(name, 0.0) + self._read(task / "stat")
            except (OSError, IndexError, ValueError):
                continue  # the thread ended meanwhile
        return spent

    def _run(self) -> None:
        while True:
            try:
                now, cpu = time.monotonic(), self._read()
                pages = int(self._statm.read_text().split()[1])
                threads = self._per_thread()
            except (OSError, IndexError, ValueError):
                return  # reaped
            self.samples.append((now, cpu))
            self.threads.append((now, threads))
            self.rss.append((now, pages * self._page_mb))
            if self._done.wait(self._every):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


_COMPANY = re.compile(r"^Company: \D*?(\d+)\s*$", re.M)


def _account(call: tuple[dict[str, Any], float, float]) -> int:
    """The account a model call was for: the number `make_accounts` put in its company name."""
    for m in call[0]["messages"]:
        found = _COMPANY.search(m.get("content") or "")
        if found:
            return int(found.group(1))
    raise ValueError("a model call without a 'Company:' line")


def _interp(samples: list[tuple[float, float]], t: float) -> float:
    """CPU seconds at time t, linear between the samples around it."""
    prev = samples[0]
    for cur in samples:
        if cur[0] >= t:
            if cur[0] == prev[0]:
                return cur[1]
            return prev[1] + (cur[1] - prev[1]) * (t - prev[0]) / (cur[0] - prev[0])
        prev = cur
    return samples[-1][1]


def flat_cost(
    calls: list[tuple[dict[str, Any], float, float]],
    samples: list[tuple[float, float]],
    min_accounts: int = 2000,
    rss: list[tuple[float, float]] | None = None,
    threads: list[tuple[float, dict[str, float]]] | None = None,
) -> dict[str, Any] | None:
    """Per-account CPU and wall ms of the first and the last min(1,000, N/10) accounts (see
    bench_run.py's docstring); None below `min_accounts` accounts (the first burst of
    `--concurrency` requests arriving together would skew a small run) or without CPU samples.
    With `rss` samples, also the resident MB when the first slice ended and when the last one
    did, and the growth between them in KB per account (what a longer run would add). With
    `threads` samples (`CpuSampler.threads`), also each thread name's CPU ms per account in
    the first and the last slice, under "by_thread"."""
    spans: dict[int, tuple[float, float]] = {}
    for call in calls:
        acct = _account(call)
        start, end = spans.get(acct, (call[1], call[2]))
        spans[acct] = (min(start, call[1]), max(end, call[2]))
    if len(spans) < min_accounts or len(samples) < 2:
        return None
    size = min(1000, len(spans) // 10)
    ordered = sorted(spans.values())

    def cost(part: list[tuple[float, float]], series: list[tuple[float, float]]) -> float:
        t0, t1 = part[0][0], max(e for _, e in part)
        return (_interp(series, t1) - _interp(series, t0)) / size * 1000

    def wall(part: list[tuple[float, float]]) -> float:
        return (max(e for _, e in part) - part[0][0]) / size * 1000

    first, last = ordered[:size], ordered[-size:]
    first_cpu, first_wall = cost(first, samples), wall(first)
    last_cpu, last_wall = cost(last, samples), wall(last)
    by_thread: dict[str, dict[str, float]] = {}
    for name in sorted({n for _, spent in threads or [] for n in spent}):
        series = [(t, spent.get(name, 0.0)) for t, spent in threads or []]
        by_thread[name] = {
            "first_cpu_ms": round(cost(first, series), 2),
            "last_cpu_ms": round(cost(last, series), 2),
        }

    memory: dict[str, float] = {}
    if rss and len(rss) >= 2:
        t_first, t_last = max(e for _, e in first), max(e for _, e in last)
        mb_first, mb_last = _interp(rss, t_first), _interp(rss, t_last)
        memory = {
            "rss_mb_after_first": round(mb_first, 1),
            "rss_mb_after_last": round(mb_last, 1),
            "rss_kb_per_account": round((mb_last - mb_first) * 1024 / (len(ordered) - size), 1),
        }
    return {
        **memory,
        "slice_accounts": size,
        "first_cpu_ms": round(first_cpu, 2),
        "last_cpu_ms": round(last_cpu, 2),
        "cpu_ratio": round(last_cpu / first_cpu, 3),
        "first_wall_ms": round(first_wall, 2),
        "last_wall_ms": round(last_wall, 2),
        "wall_ratio": round(last_wall / first_wall, 3),
        **({"by_thread": by_thread} if by_thread else {}),
    }
