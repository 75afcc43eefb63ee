"""`bench/run_all.py`'s bookkeeping: reading `BENCH` lines and comparing figures as ratios.

The benchmarks themselves are not run here (timings are noisy; `make bench` runs them); a
tiny benchmark script in tmp_path stands in for one, run as a real child process.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run_all() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_all", ROOT / "bench" / "run_all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_bench_lines_are_merged_and_flattened(run_all: ModuleType) -> None:
    output = "\n".join(
        [
            "seeded 10,000 drafts",
            'BENCH {"bench": "x", "drafts": 10000, "web_ms": 27.5, "ok": true, "note": "n"}',
            "not BENCH {} at the start: ignored",
            'BENCH {"bench": "x", "cold": {"wall_s": 3.5, "accounts": 1000}}',
        ]
    )
    assert run_all.parse(output) == {
        "drafts": 10000.0,
        "web_ms": 27.5,
        "cold.wall_s": 3.5,
        "cold.accounts": 1000.0,
    }


def test_times_slower_beyond_the_threshold_are_flagged_rates_the_other_way(
    run_all: ModuleType,
) -> None:
    before = {"x": {"a_s": 1.0, "b_ms": 10.0, "pages_per_s": 40.0, "n": 1000.0, "gone_s": 2.0}}
    now = {"x": {"a_s": 1.3, "b_ms": 12.0, "pages_per_s": 30.0, "n": 2000.0, "new_ms": 5.0}}
    rows = {r.figure: r for r in run_all.compare(now, before, 1.25)}
    assert rows["a_s"].flag == "SLOWER" and rows["a_s"].ratio == pytest.approx(1.3)
    assert rows["b_ms"].flag == "" and rows["b_ms"].ratio == pytest.approx(1.2)
    assert rows["pages_per_s"].flag == "SLOWER"  # 0.75 < 1 / 1.25
    assert rows["n"].flag == "sizes differ: not like for like"
    assert rows["new_ms"].flag == "new" and rows["gone_s"].flag == "gone"
    assert run_all.kind("cold.cpu_ms_per_account") == "time"
    table = run_all.table(list(rows.values()))
    assert "now/committed" in table and "1.3" in table


def test_a_bench_script_is_run_and_its_figures_saved(
    run_all: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bench_tiny.py").write_text(
        'print("working")\nprint(\'BENCH {"bench": "tiny", "step_s": 0.5}\')\n', encoding="utf-8"
    )
    (tmp_path / "bench_silent.py").write_text("print('no figures')\n", encoding="utf-8")
    (tmp_path / "bench_broken.py").write_text("raise SystemExit(3)\n", encoding="utf-8")
    (tmp_path / "bench_slow.py").write_text("import time\ntime.sleep(60)\n", encoding="utf-8")
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({"benches": {"tiny": {"step_s": 0.25}}}), encoding="utf-8")
    monkeypatch.setattr(run_all, "HERE", tmp_path)
    monkeypatch.setattr(run_all, "FIGURES", figures)
    assert run_all.discover([], ["broken", "slow"]) == ["silent", "tiny"]
    assert run_all.main(["--only", "tiny", "silent"]) == 0
    assert run_all.main(["--only", "tiny", "--fail-on-slower"]) == 1  # 0.5 s is 2x 0.25 s
    assert run_all.main(["--only", "broken"]) == 1
    assert run_all.main(["--only", "slow", "--timeout", "1"]) == 1  # stopped, not waited for
    assert run_all.main(["--only", "tiny", "--update"]) == 0
    saved = json.loads(figures.read_text(encoding="utf-8"))
    assert saved["benches"] == {"tiny": {"step_s": 0.5}}
    with pytest.raises(SystemExit, match="no such benchmark: nope"):
        run_all.discover(["nope"], [])
