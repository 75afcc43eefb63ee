"""How long `gtm report`'s work takes over 10,000 accounts and 100,000 events (goal: under 2 s).

.venv/bin/python bench/bench_report.py [--profile]

Generates the seeded history of bench/funnel_data.py once into a temporary directory, then
times, in one process, what a report does: open the workspace, load the outbox and the events,
`compute_funnel` (8 weeks), `report_charts`, and write the four files. The first run is cold
(matplotlib imported and the template compiled on the way); the figure is the median of the
next five. The red-flag pass (`raise_red_flags`) is timed on its own, as is the whole command
(`gtm report`, a new interpreter, imports and the red-flag pass included). `--profile` prints
cProfile's top functions of one warm run.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from funnel_data import generate  # bench/ is on the path when this script runs

from gtm.app.funnel import compute_funnel, load_inputs
from gtm.app.red_flags import raise_red_flags
from gtm.app.report import write_report
from gtm.app.report_charts import report_charts
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace

AS_OF = datetime(2025, 4, 2, 12, 0, tzinfo=UTC)  # Wednesday of the week after the history
WEEKS = 8
RUNS = 5


def report_once(data: Path, out: Path) -> dict[str, float]:
    """One report, step by step; seconds per step."""
    steps: dict[str, float] = {}

    async def go() -> None:
        t = time.perf_counter()
        async with open_workspace(Settings(data_dir=data), with_model=False) as ws:
            steps["open"] = time.perf_counter() - t
            t = time.perf_counter()
            inputs = load_inputs(ws)
            steps["load"] = time.perf_counter() - t
            t = time.perf_counter()
            report = compute_funnel(inputs, as_of=AS_OF, weeks=WEEKS)
            steps["compute"] = time.perf_counter() - t
            t = time.perf_counter()
            charts = report_charts(report)
            steps["charts"] = time.perf_counter() - t
            t = time.perf_counter()
            write_report(report, out, charts=charts)
            steps["write"] = time.perf_counter() - t

    started = time.perf_counter()
    asyncio.run(go())
    steps["total"] = time.perf_counter() - started
    return steps


def red_flags_once(data: Path) -> float:
    async def go() -> None:
        async with open_workspace(Settings(data_dir=data), with_model=False) as ws:
            await raise_red_flags(ws, as_of=AS_OF)

    t = time.perf_counter()
    asyncio.run(go())
    return time.perf_counter() - t


def _line(name: str, steps: dict[str, float]) -> str:
    parts = ", ".join(f"{k} {v * 1000:.0f}" for k, v in steps.items() if k != "total")
    return f"{name}: {steps['total']:.2f} s ({parts} ms)"


def _command(data: Path, out: Path) -> float:
    gtm = Path(sys.executable).with_name("gtm")
    t = time.perf_counter()
    subprocess.run(
        [str(gtm), "--data-dir", str(data), "report", "--as-of", "2025-04-02", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t


def _profile(fn: Callable[[], object]) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "out"
        counts = generate(data)
        print(
            f"history: {counts['accounts']:,} accounts, {counts['outbox_sent']:,} sent touches, "
            f"{counts['events']:,} events (generated in {counts['seconds']} s)"
        )
        cold = report_once(data, out)
        warm = [report_once(data, out) for _ in range(RUNS)]
        median = statistics.median(s["total"] for s in warm)
        typical = min(warm, key=lambda s: abs(s["total"] - median))
        print(_line("cold first run", cold))
        print(_line(f"warm, median of {RUNS}", typical))
        runs = ", ".join(f"{s['total']:.2f}" for s in warm)
        print(f"warm runs: {runs} s")
        flags_s = red_flags_once(data)
        print(f"red-flag pass (its own load and count): {flags_s:.2f} s")
        command_s = _command(data, out / "cmd")
        print(f"`gtm report` end to end (new interpreter): {command_s:.2f} s")
        print(f"machine: {platform.machine()}, {platform.processor() or '?'}, Python "
              f"{platform.python_version()}")  # fmt: skip
        print(f"goal: under 2 s -> {'met' if median < 2 else 'NOT met'} ({median:.2f} s)")
        figures = {
            "cold_s": cold["total"],
            "warm_median_s": median,
            "red_flags_s": flags_s,
            "command_s": command_s,
        }
        print("BENCH " + json.dumps({"bench": "report", **figures}))
        if "--profile" in argv:
            _profile(lambda: report_once(data, out))


if __name__ == "__main__":
    main(sys.argv[1:])
