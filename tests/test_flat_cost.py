"""`bench/flat_cost.py`: the first and last slices' CPU per account and the memory each further
account adds, computed from a run whose figures are known by construction."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "flat_cost", Path(__file__).resolve().parents[1] / "bench" / "flat_cost.py"
)
assert _SPEC is not None and _SPEC.loader is not None
flat_cost_module = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(flat_cost_module)
flat_cost = flat_cost_module.flat_cost


def _run(n: int) -> tuple[list[Any], list[tuple[float, float]], list[tuple[float, float]]]:
    """N accounts one after another, 0.1 s each; CPU 50 ms per account for the first half and
    60 ms for the second; memory 400 MB plus 20 KB per account done."""
    calls = []
    for i in range(n):
        body = {"messages": [{"role": "user", "content": f"Facts\nCompany: Name{i}\nmore"}]}
        calls.append((body, i * 0.1, i * 0.1 + 0.1))
    cpu, rss = [], []
    spent = 0.0
    for step in range(n * 2 + 1):  # every 0.05 s
        t = step * 0.05
        cpu.append((t, spent))
        rss.append((t, 400 + t / 0.1 * 20 / 1024))
        spent += 0.025 if t < n * 0.05 else 0.030
    return calls, cpu, rss


def test_slices_cost_and_memory_per_account() -> None:
    calls, cpu, rss = _run(2000)
    got = flat_cost(calls, cpu, rss=rss)
    assert got is not None
    assert got["slice_accounts"] == 200
    assert got["first_cpu_ms"] == pytest.approx(50, rel=0.01)
    assert got["last_cpu_ms"] == pytest.approx(60, rel=0.01)
    assert got["cpu_ratio"] == pytest.approx(1.2, rel=0.01)
    assert got["rss_kb_per_account"] == pytest.approx(20, rel=0.01)
    assert got["rss_mb_after_last"] - got["rss_mb_after_first"] == pytest.approx(
        1800 * 20 / 1024, rel=0.01
    )


def test_without_memory_samples_or_below_the_minimum() -> None:
    calls, cpu, _ = _run(2000)
    got = flat_cost(calls, cpu)
    assert got is not None and "rss_kb_per_account" not in got
    small_calls, small_cpu, small_rss = _run(500)
    assert flat_cost(small_calls, small_cpu, rss=small_rss) is None


def test_cost_by_thread_name() -> None:
    """Of the 50 then 60 ms per account, "python" spends 40 then 44 and "tokio-rt-worker" 10
    then 16; a third name appears only in the second half (a thread started late)."""
    calls, cpu, _ = _run(2000)
    threads = []
    for t, total in cpu:
        half = 2000 * 0.05
        early, late = min(t, half) / 0.1, max(0.0, t - half) / 0.1  # accounts' worth of time
        spent = {"python": early * 0.040 + late * 0.044, "tokio-rt-worker": early * 0.010}
        spent["tokio-rt-worker"] += late * 0.014
        if late:
            spent["sqlx-sqlite-wor"] = late * 0.002
        assert sum(spent.values()) == pytest.approx(total, abs=0.03)
        threads.append((t, spent))
    got = flat_cost(calls, cpu, threads=threads)
    assert got is not None
    by = got["by_thread"]
    assert by["python"]["first_cpu_ms"] == pytest.approx(40, rel=0.01)
    assert by["python"]["last_cpu_ms"] == pytest.approx(44, rel=0.01)
    assert by["tokio-rt-worker"]["first_cpu_ms"] == pytest.approx(10, rel=0.01)
    assert by["tokio-rt-worker"]["last_cpu_ms"] == pytest.approx(14, rel=0.01)
    assert by["sqlx-sqlite-wor"]["first_cpu_ms"] == pytest.approx(0, abs=0.01)
    assert by["sqlx-sqlite-wor"]["last_cpu_ms"] == pytest.approx(2, rel=0.01)
    assert "by_thread" not in (flat_cost(calls, cpu) or {})
