"""`gtm eval --record` / `--replay` (issue 19, point 5): the gate in CI replays a real model's
answers with no endpoint, and a prompt change that needs new answers is reported, not passed.

The "real model" is the scripted writer on loopback; the replays run with no model configured
at all (no GTM_MODEL_BASE_URL), so nothing could answer but the cassette.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from evals.datasets import DEFAULT_DATASETS
from tests.support.cli import run_gtm
from tests.support.openai_server import ScriptedOpenAIServer, write_from_facts

ROOT = Path(__file__).resolve().parents[1]
GENERATION = DEFAULT_DATASETS / "generation.yaml"


def _gtm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_gtm(env, *args, timeout=300)


def _env(tmp_path: Path, name: str, **extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    e.update(GTM_DATA_DIR=str(tmp_path / name), ANONYMIZED_TELEMETRY="False", **extra)
    return e


def _eval(tmp_path: Path, out: str, *args: str, env: dict[str, str]) -> Any:
    res = _gtm("eval", "--dataset", str(GENERATION), "--out", str(tmp_path / out), *args, env=env)
    report = tmp_path / out / "report.json"
    return res, json.loads(report.read_text()) if report.exists() else None


@pytest.mark.timeout(300)
def test_record_then_replay_without_a_model_and_a_prompt_change_is_reported(
    tmp_path: Path,
) -> None:
    tape = tmp_path / "tape.jsonl"
    base = tmp_path / "baseline.json"
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        live = _env(tmp_path, "rec", GTM_MODEL_BASE_URL=srv.base_url, GTM_MODEL="scripted")
        rec, recorded = _eval(
            tmp_path,
            "rec",
            "--record",
            str(tape),
            "--baseline",
            str(base),
            "--update-baseline",
            env=live,
        )
        asked = len(srv.requests)
    assert rec.returncode == 0, rec.stdout + rec.stderr
    assert "cassette written" in rec.stdout
    lines = tape.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["entries"] == len(lines) - 1 >= 7  # one per distinct request
    assert asked >= len(lines) - 1

    # The server is gone and no model is configured: only the cassette can answer.
    offline = _env(tmp_path, "replay")
    again, replayed = _eval(
        tmp_path, "replay", "--replay", str(tape), "--baseline", str(base), env=offline
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert replayed["model"] == recorded["model"] == "scripted"
    assert replayed["metrics"] == recorded["metrics"]
    assert [g["body"] for g in replayed["generation"]] == [
        g["body"] for g in recorded["generation"]
    ]
    assert "replay_misses" not in replayed

    # A prompt change that needs new answers fails the gate and says what changed.
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    note = prompts / "personalize_linkedin_note.md"
    note.write_text(
        note.read_text(encoding="utf-8").replace("Rules:", "Rules (be brief):", 1),
        encoding="utf-8",
    )
    changed, report = _eval(
        tmp_path,
        "changed",
        "--replay",
        str(tape),
        "--prompts",
        str(prompts),
        "--baseline",
        str(base),
        env=offline,
    )
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "have no recorded answer" in changed.stderr
    assert report["replay_misses"], report.get("notes")
    misses = report["replay_misses"]
    assert all("prompt personalize_" in m for m in misses)
    # Every note is a miss for its changed prompt; a revision that names another draft can miss
    # in turn (its input changed), and says so.
    notes = [m for m in misses if "personalize_linkedin_note → DraftOutput" in m]
    assert notes and all("system prompt changed" in m for m in notes)
    assert all("system prompt changed" in m or "input changed" in m for m in misses)
    md = (tmp_path / "changed" / "report.md").read_text(encoding="utf-8")
    assert "## Replay misses" in md


def test_a_missing_cassette_is_one_clear_line(tmp_path: Path) -> None:
    res, _ = _eval(
        tmp_path, "out", "--replay", str(tmp_path / "nope.jsonl"), env=_env(tmp_path, "d")
    )
    assert res.returncode == 2
    assert "nope.jsonl" in res.stderr and "Traceback" not in res.stderr


def test_record_and_replay_together_are_refused(tmp_path: Path) -> None:
    res, _ = _eval(tmp_path, "o", "--record", "a", "--replay", "b", env=_env(tmp_path, "d"))
    assert res.returncode == 2 and "not both" in res.stderr


def test_a_failing_model_is_one_line_and_records_nothing(tmp_path: Path) -> None:
    tape = tmp_path / "tape.jsonl"
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        srv.fail_next = [(500, {})] * 200
        live = _env(tmp_path, "rec", GTM_MODEL_BASE_URL=srv.base_url, GTM_MODEL="scripted")
        res, _ = _eval(tmp_path, "rec", "--record", str(tape), env=live)
    assert res.returncode == 4, res.stdout + res.stderr
    assert "the model failed, so nothing was scored or recorded" in res.stderr
    assert "Traceback" not in res.stderr and not tape.exists()
