"""Nothing phones home: onnxruntime (the offline embedding) has shipped telemetry to Microsoft
on Linux since 1.29 (its binary carries the collector's address), on unless
ORT_DISABLE_TELEMETRY is set before its environment is created. Importing `memory`, which every
path to the embedding does, sets it; a user who sets it explicitly keeps their value."""

from __future__ import annotations

import os
import subprocess
import sys


def _after_import(env: dict[str, str]) -> str:
    code = (
        "import memory.embedding, os; "
        "memory.embedding.MiniLMEmbedding().embed(['hello']); "
        "print(os.environ.get('ORT_DISABLE_TELEMETRY'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_embedding_runs_with_onnxruntime_telemetry_off() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    assert _after_import(env) == "1"


def test_an_explicit_choice_is_kept() -> None:
    assert _after_import({**os.environ, "ORT_DISABLE_TELEMETRY": "0"}) == "0"
