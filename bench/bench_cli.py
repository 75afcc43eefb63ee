"""How long `gtm` takes to answer before it does any work: `gtm --help` and `gtm status --help`,
each the median of N runs (default 5) in a new interpreter, then the imports that cost most
(`python -X importtime`, cumulative). Issue 20's goal: `gtm --help` in 0.3 s or less; a heavy
library (the model client, Chroma, LangGraph, the web server) loads only in a command that
needs it.

The commands run against an empty temporary data directory, so no user state is read.

.venv/bin/python bench/bench_cli.py [N] [--top K]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS = (("--help",), ("status", "--help"))


def _env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "GTM_DATA_DIR": str(data_dir), "NO_COLOR": "1", "COLUMNS": "100"}


def wall_times(args: tuple[str, ...], runs: int, env: dict[str, str]) -> list[float]:
    """Seconds for `python -m gtm ARGS` to start, answer and exit, once per run."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "gtm", *args],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        times.append(time.perf_counter() - start)
    return times


def top_imports(args: tuple[str, ...], k: int, env: dict[str, str]) -> list[tuple[float, str]]:
    """The k top-level-most costly imports, by cumulative time (ms), of one run."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gtm", *args],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = (part.strip() for part in line.split("|"))
        if cumulative.isdigit():
            rows.append((int(cumulative) / 1000, name))
    return sorted(rows, reverse=True)[:k]


def main(runs: int = 5, top: int = 12) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = _env(Path(tmp))
        figures: dict[str, float] = {}
        for args in COMMANDS:
            shown = "gtm " + " ".join(args)
            times = wall_times(args, runs, env)
            print(
                f"{shown}: median {statistics.median(times):.3f} s over {runs} runs "
                f"(min {min(times):.3f}, max {max(times):.3f})"
            )
            figures["_".join(a.strip("-") for a in args) + "_s"] = statistics.median(times)
        for args in COMMANDS:
            print(f"\ntop imports of gtm {' '.join(args)} (cumulative ms):")
            for ms, name in top_imports(args, top, env):
                print(f"  {ms:8.1f}  {name}")
        print("BENCH " + json.dumps({"bench": "cli", **figures}))


if __name__ == "__main__":
    argv = sys.argv[1:]
    k = 12
    if "--top" in argv:
        i = argv.index("--top")
        k = int(argv[i + 1])
        del argv[i : i + 2]
    main(int(argv[0]) if argv else 5, k)
