"""The eval harness: datasets, metrics, baselines, and that the CI gate bites."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from evals.checks import CHECK_NAMES
from evals.context import CheckContext
from evals.datasets import DEFAULT_DATASETS, DatasetError, load_datasets
from evals.harness import (
    BatchItem,
    ScoredDraft,
    compare,
    labeled_metrics,
    score_batch,
)
from gtm.domain.models import Contact, Draft, Fact
from gtm.domain.playbook import load_playbook
from tests.support.cli import run_gtm
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response, write_from_facts

ROOT = Path(__file__).resolve().parents[1]
PB = load_playbook()
GENERATION = DEFAULT_DATASETS / "generation.yaml"


def test_shipped_datasets_cover_what_the_playbook_asks() -> None:
    ds = load_datasets()
    assert len(ds.labeled) >= 80
    categories = Counter(c.category for c in ds.labeled)
    for needed in (
        "good",
        "generic_template",
        "fabrication",
        "wrong_person",
        "placeholder",
        "length",
        "near_duplicate",
        "injection",
    ):
        assert categories[needed] >= 3, (needed, categories)
    labeled = {c for case in ds.labeled for c in case.expected.failing}
    assert labeled == set(CHECK_NAMES), set(CHECK_NAMES) - labeled
    assert len(ds.generation) >= 10


def test_a_bad_case_is_reported_with_file_case_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "cases:\n"
        "  - id: c1\n    category: good\n"
        "    account: {company: A, domain: a.ai}\n"
        "    contact: {name: Ann Lee}\n"
        "    facts: []\n"
        "    draft: {channel: linkedin, step: linkedin_connect, body: hi}\n"
        "    expected: {verdict: fail, failing: [too_generic]}\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"bad\.yaml: c1: expected\.failing: .*too_generic"):
        load_datasets([bad])
    with pytest.raises(DatasetError, match="no such file"):
        load_datasets([tmp_path / "missing.yaml"])


def _scored(failing: list[str], expected: list[str]) -> ScoredDraft:
    return ScoredDraft(
        id="x",
        body="b",
        failing=failing,
        findings={},
        scores={},
        genericness=0.0,
        expected_failing=expected,
        expected_verdict="fail" if expected else "pass",
    )


def test_precision_and_recall_against_labels() -> None:
    m = labeled_metrics(
        [
            _scored(["groundedness"], ["groundedness"]),  # tp
            _scored(["groundedness"], []),  # fp
            _scored([], ["groundedness"]),  # fn
            _scored([], []),  # tn
        ]
    )
    assert m["labeled.precision.groundedness"] == 0.5
    assert m["labeled.recall.groundedness"] == 0.5
    assert m["labeled.verdict_accuracy"] == 0.5
    assert "labeled.precision.length" not in m  # never fired: no precision, not a free 1.0


def test_only_a_tracked_metric_past_the_threshold_regresses() -> None:
    base = {"generation.pass_rate": 0.8, "labeled.verdict_accuracy": 0.9, "other": 1.0}
    now = {
        "generation.pass_rate": 0.70,
        "labeled.verdict_accuracy": 0.86,
        "other": 0.0,
        "labeled.recall.length": 1.0,
    }
    regressions, missing = compare(now, base, PB)
    assert [r.metric for r in regressions] == ["generation.pass_rate"]
    assert missing == ["labeled.recall.length"]
    # One generated draft of 14 flipping (0.071) is within the playbook's noise allowance.
    assert compare({"generation.pass_rate": 0.73}, base, PB) == ([], [])


def _item(i: int, body: str) -> BatchItem:
    contact = Contact(name=f"Person{i} Lee")
    facts = [Fact(id="f1", text="fact one", source="t"), Fact(id="f2", text="two", source="t")]
    draft = Draft(
        channel="linkedin",
        step="linkedin_connect",
        body=body,
        cited_fact_ids=("f1", "f2"),
        prompt_version="t@1",
        model="t",
    )
    return BatchItem(f"d{i}", draft, CheckContext(facts=facts, playbook=PB, contact=contact))


def test_a_batch_sharing_one_skeleton_fails() -> None:
    skeleton = (
        "Hi Person{i}, I saw that Company{i} is scaling its platform team and thought our "
        "retrieval engine could help you ship faster. Would you be open to a chat?"
    )
    reviews, verdict = score_batch(
        [_item(i, skeleton.format(i=i)) for i in range(4)], PB, embed=None
    )
    assert not verdict["passed"] and verdict["duplicate_share"] == 1.0
    assert all("near_duplicates" in [r.check for r in rv.failures] for rv in reviews)
    diverse = [
        "Person0, the on-prem launch for banks must have been a hard quarter. What broke first?",
        "Hi Person1, congrats on the Series A. How are you thinking about search next year?",
        "Person2, your post on chunking transcripts was sharp. Did overlap windows help?",
    ]
    _, ok = score_batch([_item(i, b) for i, b in enumerate(diverse)], PB, embed=None)
    assert ok["passed"] and ok["largest_skeleton"] == []


def _gtm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_gtm(env, *args, timeout=300)


@pytest.fixture
def env(tmp_path: Path) -> Any:
    with ScriptedOpenAIServer(responder=write_from_facts) as srv:
        e = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        e.update(
            GTM_MODEL_BASE_URL=srv.base_url,
            GTM_MODEL="scripted",
            GTM_DATA_DIR=str(tmp_path / "data"),
            ANONYMIZED_TELEMETRY="False",
        )
        yield e


def _degrade(dst: Path) -> Path:
    """A prompt change that makes drafts generic: the writer no longer sees the facts."""
    shutil.copytree(ROOT / "prompts", dst, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    for p in dst.glob("personalize_*.md"):
        text = p.read_text(encoding="utf-8")
        text = text.replace("FACTS:\n{facts}\n", "").replace(" facts,", "")
        p.write_text(text, encoding="utf-8")
    return dst


@pytest.mark.timeout(300)
def test_the_gate_fails_when_a_prompt_change_makes_drafts_generic(
    tmp_path: Path, env: dict[str, str]
) -> None:
    base = tmp_path / "baseline.json"
    good = _gtm(
        "eval",
        "--dataset",
        str(GENERATION),
        "--baseline",
        str(base),
        "--update-baseline",
        "--out",
        str(tmp_path / "good"),
        env=env,
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(base.read_text())["metrics"]["generation.mean_specificity"] > 0.3

    same = _gtm(
        "eval",
        "--dataset",
        str(GENERATION),
        "--baseline",
        str(base),
        "--out",
        str(tmp_path / "same"),
        env=env,
    )
    assert same.returncode == 0, same.stdout + same.stderr

    worse = _gtm(
        "eval",
        "--dataset",
        str(GENERATION),
        "--prompts",
        str(_degrade(tmp_path / "prompts")),
        "--baseline",
        str(base),
        "--out",
        str(tmp_path / "worse"),
        env=env,
    )
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "regression" in worse.stderr
    report = json.loads((tmp_path / "worse" / "report.json").read_text())
    fell = {r["metric"] for r in report["regressions"]}
    assert {"generation.mean_specificity", "generation.pass_rate.genericness"} <= fell
    md = (tmp_path / "worse" / "report.md").read_text()
    assert "## Regressions" in md and re.search(r"\| generation\.mean_specificity \|", md)


def test_eval_refuses_an_unknown_prompt_version(tmp_path: Path, env: dict[str, str]) -> None:
    res = _gtm("eval", "--dataset", str(GENERATION), "--prompt-version", "9", env=env)
    assert res.returncode == 2 and "no personalize_email@9.md" in res.stderr


def _write_or_judge(request: dict[str, Any]) -> dict[str, Any]:
    if request["tool_choice"]["function"]["name"] != "JudgeScores":
        return write_from_facts(request)
    user = request["messages"][-1]["content"]
    specific = "I read that" in user  # the judge sees the message it grades
    scores = {"personalization_depth": 4 if specific else 1, "relevance": 4, "clarity": 5}
    return tool_call_response(
        "JudgeScores", {**scores, "tone": 5, "reasons": "Cites the blog post; one question."}
    )


@pytest.mark.timeout(300)
def test_the_optional_judge_grades_each_draft(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(responder=_write_or_judge) as srv:
        e = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        e.update(GTM_MODEL_BASE_URL=srv.base_url, GTM_MODEL="scripted")
        res = _gtm("eval", "--dataset", str(GENERATION), "--judge", "--out", str(tmp_path), env=e)
        judged = [r for r in srv.requests if r["tool_choice"]["function"]["name"] == "JudgeScores"]
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(judged) == len(report["generation"]) >= 10
    assert report["metrics"]["judge.personalization_depth"] == 0.75
    assert report["metrics"]["judge.clarity"] == 1.0
    assert all(d["judge"]["reasons"] for d in report["generation"])
    assert "judge" in (tmp_path / "report.md").read_text()
