"""Run every benchmark in bench/, collect its figures, compare them with the committed ones.

Each `bench/bench_*.py` runs in a new interpreter, as a person would run it, its output passed
through; its figures are the JSON of the line(s) it prints as `BENCH {...}` (nested objects are
flattened to `outer.inner`). They are compared with `bench/figures.json`, the figures last
written with `--update` and committed, as ratios now / committed:

- a figure named `..._s`, `..._ms` or `..._ms_per_...` is a time: lower is better, and a ratio
  above the threshold (1.25) is flagged SLOWER;
- a figure named `..._per_s` is a rate: higher is better, and a ratio below 1 / threshold is
  flagged SLOWER;
- any other number (drafts, accounts) says what was measured: when it differs from the
  committed run, the ratios of that benchmark compare different work, and that is said.

Timings on a shared 2-core machine are noisy, so this is not part of the test suite: it prints,
and fails (exit 1) only when a benchmark could not run (stopped at the timeout, or it failed
without printing figures), or with `--fail-on-slower` when a figure
is flagged. A benchmark that prints no `BENCH` line is reported as such; a missing one is
simply not run.

.venv/bin/python bench/run_all.py [--only NAME ...] [--skip NAME ...] [--update]
    [--threshold 1.25] [--timeout SECONDS] [--fail-on-slower]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures.json"
PREFIX = "BENCH "


@dataclass
class Outcome:
    """One benchmark's run: its figures, how it ended, how long it took."""

    name: str
    figures: dict[str, float] = field(default_factory=dict)
    code: int | None = 0
    """The exit status; None when it was stopped at the timeout."""
    seconds: float = 0.0

    @property
    def ran(self) -> bool:
        return self.code is not None and bool(self.figures)


def discover(only: list[str], skip: list[str]) -> list[str]:
    """The benchmarks' names (`bench_inbox.py` is `inbox`), in name order."""
    names = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    unknown = sorted(set(only) - set(names))
    if unknown:
        raise SystemExit(f"no such benchmark: {', '.join(unknown)} (have {', '.join(names)})")
    return [n for n in names if (not only or n in only) and n not in skip]


def flatten(value: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numbers of a BENCH object, nested keys joined with '.'; strings and the like dropped."""
    out: dict[str, float] = {}
    for key, v in value.items():
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{name}."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[name] = float(v)
    return out


def parse(output: str) -> dict[str, float]:
    """Every `BENCH {...}` line of a benchmark's output, merged (the `bench` name dropped)."""
    figures: dict[str, float] = {}
    for line in output.splitlines():
        if line.startswith(PREFIX):
            value = json.loads(line[len(PREFIX) :])
            value.pop("bench", None)
            figures.update(flatten(value))
    return figures


def run_one(name: str, timeout: float) -> Outcome:
    """Run `bench_NAME.py`, passing its output through, and read its figures."""
    print(f"\n=== {name} ===", flush=True)
    start = time.perf_counter()
    lines: list[str] = []
    code: int | None
    with subprocess.Popen(
        [sys.executable, str(HERE / f"bench_{name}.py")],
        cwd=HERE.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:

        def relay() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                lines.append(line)

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
            print(f"[{name}: stopped after {timeout:.0f} s]")
        reader.join(timeout=10)
    return Outcome(name, parse("".join(lines)), code, time.perf_counter() - start)


def kind(figure: str) -> str:
    """'time' (lower is better), 'rate' (higher is better) or 'size' (what was measured)."""
    last = figure.rsplit(".", 1)[-1]
    if last.endswith("_per_s"):
        return "rate"
    if last.endswith(("_s", "_ms")) or "_ms_per_" in last or "_s_per_" in last:
        return "time"
    return "size"


@dataclass(frozen=True)
class Row:
    bench: str
    figure: str
    committed: float | None
    now: float | None
    flag: str

    @property
    def ratio(self) -> float | None:
        if self.committed is None or self.now is None or self.committed == 0:
            return None
        return self.now / self.committed


def compare(
    now: dict[str, dict[str, float]], before: dict[str, dict[str, float]], threshold: float
) -> list[Row]:
    """One row per time or rate figure of the benchmarks run now, flagged SLOWER beyond the
    threshold, new or gone when only one side has it; sizes that changed are rows too."""
    rows: list[Row] = []
    for bench, figures in now.items():
        old = before.get(bench, {})
        for figure in sorted(set(figures) | set(old)):
            a, b = old.get(figure), figures.get(figure)
            what = kind(figure)
            if what == "size":
                if a is not None and b is not None and a != b:
                    rows.append(Row(bench, figure, a, b, "sizes differ: not like for like"))
                continue
            flag = "new" if a is None else "gone" if b is None else ""
            if a and b is not None:
                ratio = b / a
                slower = ratio > threshold if what == "time" else ratio < 1 / threshold
                flag = "SLOWER" if slower else ""
            rows.append(Row(bench, figure, a, b, flag))
    return rows


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4g}"


def table(rows: list[Row]) -> str:
    head = ("bench", "figure", "committed", "now", "now/committed", "")
    body = [
        (r.bench, r.figure, _fmt(r.committed), _fmt(r.now), _fmt(r.ratio), r.flag) for r in rows
    ]
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        padded = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join(line(x) for x in [head, *body])


def load(path: Path) -> dict[str, dict[str, float]]:
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: {f: float(v) for f, v in figs.items()} for k, figs in data["benches"].items()}


def save(path: Path, outcomes: list[Outcome], keep: dict[str, dict[str, float]]) -> None:
    """Write the figures of the benchmarks that ran, keeping the committed ones of the rest."""
    benches = dict(keep)
    benches.update(
        {o.name: {k: float(f"{v:.4g}") for k, v in o.figures.items()} for o in outcomes if o.ran}
    )
    doc = {
        "measured": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {platform.processor() or '?'}",
        "python": platform.python_version(),
        "benches": {k: benches[k] for k in sorted(benches)},
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--only", nargs="+", default=[], metavar="NAME")
    ap.add_argument("--skip", nargs="+", default=[], metavar="NAME")
    ap.add_argument("--update", action="store_true", help=f"write {FIGURES.name}")
    ap.add_argument("--threshold", type=float, default=1.25)
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark")
    ap.add_argument("--fail-on-slower", action="store_true")
    args = ap.parse_args(argv)

    before = load(FIGURES)
    outcomes = [run_one(name, args.timeout) for name in discover(args.only, args.skip)]
    print("\n=== figures against bench/figures.json ===")
    for o in outcomes:
        how = "stopped at the timeout" if o.code is None else f"exit {o.code}"
        note = "" if o.figures else ", no BENCH line: nothing to compare"
        print(f"{o.name}: {how}, {o.seconds:.0f} s{note}")
    rows = compare({o.name: o.figures for o in outcomes if o.ran}, before, args.threshold)
    print(table(rows) if rows else "no figures to compare")
    slower = [r for r in rows if r.flag == "SLOWER"]
    if slower:
        print(f"{len(slower)} figure(s) slower than {args.threshold}x the committed ones")
    if args.update:
        save(FIGURES, outcomes, before)
        print(f"wrote {FIGURES.relative_to(HERE.parent)}")
    failed = [o.name for o in outcomes if o.code is None or (o.code != 0 and not o.figures)]
    if failed:
        print(f"could not run: {', '.join(failed)}")
    return 1 if failed or (slower and args.fail_on_slower) else 0


if __name__ == "__main__":
    sys.exit(main())
