"""The judge, calibrated: accuracy and Cohen's kappa against the labels, next to the checks.

The arithmetic is checked on textbook tables; the whole path runs through the real
`gtm eval --judge` against the scripted OpenAI-compatible server on loopback, whose judge
answers are planned per case so the expected figures are known exactly.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from evals.agreement import agreement, cohens_kappa
from evals.context import CheckContext
from evals.datasets import DEFAULT_DATASETS, load_datasets
from evals.judge import JudgeScores, draft_text, draft_verdict, message_verdict
from evals.judge_calibration import JudgeAgreement, JudgedCase, agreement_markdown
from evals.messages import HELDOUT_MESSAGES, load_messages
from evals.specificity import DEFAULT_MIN_SPECIFICITY, specificity
from gtm.domain.playbook import JudgeVerdicts, PlaybookError, load_playbook
from tests.support.cli import run_gtm
from tests.support.openai_server import (
    ScriptedOpenAIServer,
    text_response,
    tool_call_response,
    write_from_facts,
)

ROOT = Path(__file__).resolve().parents[1]
BASE = DEFAULT_DATASETS / "labeled" / "base.yaml"


# ----------------------------------------------------------------------------- arithmetic


def _table(yy: int, yn: int, ny: int, nn: int) -> tuple[list[str], list[str]]:
    """Two raters from a 2x2 table: yy both yes, yn a yes and b no, and so on."""
    a = ["y"] * (yy + yn) + ["n"] * (ny + nn)
    b = ["y"] * yy + ["n"] * yn + ["y"] * ny + ["n"] * nn
    return a, b


@pytest.mark.parametrize(
    ("cells", "kappa"),
    [
        # Wikipedia, "Cohen's kappa", simple example: p_o 0.7, p_e 0.5.
        ((20, 5, 10, 15), 0.4),
        # Wikipedia, "Same percentages but different numbers": both p_o 0.6.
        ((45, 15, 25, 15), 0.06 / 0.46),
        ((25, 35, 5, 35), 0.14 / 0.54),
        # Perfect agreement with both classes used, and perfect disagreement.
        ((3, 0, 0, 7), 1.0),
        ((0, 5, 5, 0), -1.0),
    ],
)
def test_kappa_matches_textbook_tables(cells: tuple[int, int, int, int], kappa: float) -> None:
    a, b = _table(*cells)
    assert cohens_kappa(a, b) == pytest.approx(kappa, abs=1e-12)
    assert agreement(a, b).accuracy == pytest.approx((cells[0] + cells[3]) / sum(cells))


def test_kappa_with_three_classes() -> None:
    # Agree on 7 of 9 (a a . b b . c c c); p_e = (3*2 + 3*3 + 3*4) / 81 = 1/3;
    # kappa = (7/9 - 1/3) / (2/3) = 2/3.
    a = list("aaabbbccc")
    b = list("aabbbcccc")
    assert cohens_kappa(a, b) == pytest.approx(2 / 3)


def test_degenerate_cases_are_defined_not_accidental() -> None:
    assert agreement([], []).accuracy is None and cohens_kappa([], []) is None
    # Both raters all in one class: 0/0, undefined; accuracy is still 1.
    same = agreement(["pass"] * 4, ["pass"] * 4)
    assert same.kappa is None and same.accuracy == 1.0
    # A rater that says "pass" to everything adds nothing over chance, however often it is right.
    lazy = agreement(["pass"] * 10, ["pass"] * 9 + ["fail"])
    assert lazy.kappa == 0.0 and lazy.accuracy == 0.9
    with pytest.raises(ValueError, match="same"):
        cohens_kappa(["a"], ["a", "b"])


# ------------------------------------------------------------------------- the verdict rule


def _scores(depth: int, rest: int = 4) -> JudgeScores:
    return JudgeScores(
        personalization_depth=depth, relevance=rest, clarity=rest, tone=rest, reasons="r"
    )


def test_the_rule_turns_grades_into_verdicts_and_lives_in_the_playbook(tmp_path: Path) -> None:
    shipped = load_playbook().evals.judge
    assert (shipped.pass_min, shipped.personalized_min) == (3, 3)
    assert draft_verdict(_scores(3, 3), shipped) == "pass"
    assert draft_verdict(_scores(4, 2), shipped) == "fail"  # every dimension must reach it
    assert message_verdict(_scores(3, 1), shipped) == "personalized"
    assert message_verdict(_scores(2, 5), shipped) == "generic"
    strict = JudgeVerdicts(pass_min=4, personalized_min=5)
    assert draft_verdict(_scores(3, 5), strict) == "fail"
    assert message_verdict(_scores(4), strict) == "generic"

    text = (ROOT / "gtm/domain/playbook.default.yaml").read_text(encoding="utf-8")
    custom = tmp_path / "pb.yaml"
    custom.write_text(text.replace("    pass_min: 3\n", "    pass_min: 4\n"), encoding="utf-8")
    assert load_playbook(custom).evals.judge.pass_min == 4
    custom.write_text(text.replace("    pass_min: 3\n", "    pass_min: 6\n"), encoding="utf-8")
    with pytest.raises(PlaybookError, match="pass_min"):
        load_playbook(custom)


def test_unanswered_cases_are_counted_and_named() -> None:
    cases = [
        JudgedCase(id="a", label="pass", checks="pass", judge="pass"),
        JudgedCase(id="b", label="fail", checks="pass", judge="fail"),
        JudgedCase(id="c", label="fail", checks="fail", error="judge gave no usable answer (X)"),
        JudgedCase(id="d", label="pass", checks="fail", judge="fail"),
    ]
    s = JudgeAgreement(name="labeled", rule="r", checks_by="c", cases=cases)
    m = s.metrics()
    assert m["judge_agreement.labeled.coverage"] == 0.75
    # Over a, b, d only, for both raters: judge 2/3; checks 1/3 (and 2/4 over all four).
    assert m["judge_agreement.labeled.accuracy"] == round(2 / 3, 4)
    assert m["judge_agreement.labeled.checks_accuracy"] == round(1 / 3, 4)
    assert s.checks(all_cases=True).accuracy == 0.5
    md = "\n".join(agreement_markdown([s]))
    assert "no usable answer for 1 of 4" in md and "c (judge gave no usable answer (X))" in md
    assert "**d**: labeled pass, judge says fail" in md


# ------------------------------------------------------------------ end to end, `gtm eval`

DRAFT_PASS = ["good-001", "good-002", "good-003", "good-004", "good-005"]
DRAFT_FAIL = ["generic-001", "generic-002", "generic-003", "generic-004", "generic-005"]


def _pick_messages() -> tuple[list[str], list[str]]:
    msgs = load_messages(HELDOUT_MESSAGES)
    pers = [m.id for m in msgs if m.label == "personalized"][:5]
    gen = [m.id for m in msgs if m.label == "generic"][:5]
    return pers, gen


MSG_PERS, MSG_GEN = _pick_messages()

# The judge's planned grades, per case id: (personalization_depth, every other dimension).
# Drafts: right on good-001..003 and generic-001..004; it fails good-004/005 on clarity and
# passes generic-005. Messages: right on four of each label; the fifth personalized message
# gets depth 2, the fifth generic one depth 3 (the rule is "at least 3": personalized).
PLAN: dict[str, tuple[int, int]] = {
    **{i: (4, 4) for i in DRAFT_PASS[:3]},
    **{i: (4, 2) for i in DRAFT_PASS[3:]},
    **{i: (1, 2) for i in DRAFT_FAIL[:4]},
    DRAFT_FAIL[4]: (4, 4),
    **{i: (4, 4) for i in MSG_PERS[:4]},
    MSG_PERS[4]: (2, 4),
    **{i: (1, 4) for i in MSG_GEN[:4]},
    MSG_GEN[4]: (3, 4),
}
GARBAGE = {DRAFT_PASS[3], DRAFT_FAIL[4], MSG_GEN[4]}


def _texts(labeled: Path, messages: Path) -> dict[str, str]:
    """What the judge is shown for each case, to tell from a request which case it grades."""
    out = {c.id: draft_text(c.as_draft()).strip() for c in load_datasets([labeled]).labeled}
    out |= {m.id: m.text.strip() for m in load_messages(messages)}
    return out


def _judge(texts: dict[str, str], garbage: set[str]) -> Any:
    by_text = {t: i for i, t in texts.items()}

    def respond(request: dict[str, Any]) -> dict[str, Any]:
        if request["tool_choice"]["function"]["name"] != "JudgeScores":
            return write_from_facts(request)
        user = request["messages"][-1]["content"]
        shown = re.search(r"MESSAGE:\n(.*)\n\nGrade it by calling", user, re.S)
        assert shown, user
        case = by_text[shown.group(1).strip()]
        if case in garbage:  # three kinds of unusable answer
            if case.startswith("good"):
                return text_response("I think this message is quite good overall.")
            if case.startswith("generic"):
                bad = {"personalization_depth": 9, "relevance": 4, "clarity": 4, "tone": 4}
                return tool_call_response("JudgeScores", {**bad, "reasons": "r"})
            return _broken_arguments()
        depth, rest = PLAN[case]
        grades = {"personalization_depth": depth, "relevance": rest, "clarity": rest, "tone": rest}
        return tool_call_response("JudgeScores", {**grades, "reasons": f"graded {case}"})

    return respond


def _broken_arguments() -> dict[str, Any]:
    reply = tool_call_response("JudgeScores", {})
    reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] = '{"personal'
    return reply


def _kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """The textbook formula, written out again so the test does not trust the module."""
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    p_e = sum((a.count(c) / n) * (b.count(c) / n) for c in set(a) | set(b))
    return (p_o - p_e) / (1 - p_e)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("judge-sets")
    raw = yaml.safe_load(BASE.read_text(encoding="utf-8"))
    keep = DRAFT_PASS + DRAFT_FAIL
    cases = [c for c in raw["cases"] if c["id"] in keep]
    assert len(cases) == 10 and all("batch" not in c for c in cases)
    labeled = d / "labeled.yaml"
    labeled.write_text(yaml.safe_dump({"cases": cases}, allow_unicode=True), encoding="utf-8")
    raw = yaml.safe_load(HELDOUT_MESSAGES.read_text(encoding="utf-8"))
    items = [m for m in raw["messages"] if m["id"] in MSG_PERS + MSG_GEN]
    messages = d / "messages.yaml"
    messages.write_text(yaml.safe_dump({"messages": items}, allow_unicode=True), encoding="utf-8")
    return labeled, messages


def _env(tmp_path: Path, base_url: str | None) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
    e.update(GTM_DATA_DIR=str(tmp_path / "data"), ANONYMIZED_TELEMETRY="False")
    if base_url:
        e.update(GTM_MODEL_BASE_URL=base_url, GTM_MODEL="scripted")
    return e


def _eval(files: tuple[Path, Path], out: Path, env: dict[str, str], *extra: str) -> Any:
    labeled, messages = files
    args = ["--dataset", str(labeled), "--judge-messages", str(messages), "--no-generate"]
    return run_gtm(env, "eval", *args, "--out", str(out), *extra, timeout=300)


def _checks_verdicts(report: dict[str, Any]) -> dict[str, str]:
    """The deterministic verdicts, in the labels' terms: the checks' from the report, the
    specificity score's recomputed here."""
    out = {d["id"]: ("fail" if d["failing"] else "pass") for d in report["labeled"]}
    for m in load_messages(HELDOUT_MESSAGES):
        if m.id in MSG_PERS + MSG_GEN:
            personal = specificity(m.text).score >= DEFAULT_MIN_SPECIFICITY
            out[m.id] = "personalized" if personal else "generic"
    return out


LABELS = {
    **dict.fromkeys(DRAFT_PASS, "pass"),
    **dict.fromkeys(DRAFT_FAIL, "fail"),
    **dict.fromkeys(MSG_PERS, "personalized"),
    **dict.fromkeys(MSG_GEN, "generic"),
}


def _expected_checks(report: dict[str, Any], ids: list[str]) -> tuple[float, float | None]:
    checks = _checks_verdicts(report)
    got, want = [checks[i] for i in ids], [LABELS[i] for i in ids]
    acc = sum(g == w for g, w in zip(got, want, strict=True)) / len(ids)
    one_class = len(set(got)) == 1 and set(got) == set(want)
    return round(acc, 4), None if one_class else round(_kappa(got, want), 4)


@pytest.mark.timeout(300)
def test_eval_judge_reports_agreement_next_to_the_checks(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    with ScriptedOpenAIServer(responder=_judge(_texts(*files), set())) as srv:
        res = _eval(files, tmp_path / "r", _env(tmp_path, srv.base_url), "--judge")
        judged = [r for r in srv.requests if r["tool_choice"]["function"]["name"] == "JudgeScores"]
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(judged) == 20  # every labeled draft and message, once
    # Messages come without research: the judge is told so.
    shown = [r["messages"][-1]["content"] for r in judged]
    assert sum("FACTS:\nnone\n" in u and "Company: unknown" in u for u in shown) == 10

    report = json.loads((tmp_path / "r" / "report.json").read_text())
    m = report["metrics"]
    # Drafts: right on 7 of 10; judge says pass 4 times, labels 5: p_e 0.5, kappa 0.4.
    assert m["judge_agreement.labeled.coverage"] == 1.0
    assert m["judge_agreement.labeled.accuracy"] == 0.7
    assert m["judge_agreement.labeled.kappa"] == 0.4
    # Messages: right on 8 of 10 with 5 "personalized" calls: p_e 0.5, kappa 0.6.
    assert m["judge_agreement.messages.coverage"] == 1.0
    assert m["judge_agreement.messages.accuracy"] == 0.8
    assert m["judge_agreement.messages.kappa"] == 0.6
    for name, ids in (("labeled", DRAFT_PASS + DRAFT_FAIL), ("messages", MSG_PERS + MSG_GEN)):
        acc, kappa = _expected_checks(report, ids)
        assert m[f"judge_agreement.{name}.checks_accuracy"] == acc
        assert m.get(f"judge_agreement.{name}.checks_kappa") == kappa
    # Over all the labeled drafts, the checks' accuracy is the harness's own verdict accuracy.
    assert m["judge_agreement.labeled.checks_accuracy"] == m["labeled.verdict_accuracy"]

    sets = {s["name"]: s for s in report["judge_agreement"]}
    by_id = {c["id"]: c for c in sets["labeled"]["cases"]}
    assert by_id["generic-005"]["judge"] == "pass" and by_id["good-004"]["judge"] == "fail"
    assert by_id["good-004"]["scores"]["clarity"] == 2

    md = (tmp_path / "r" / "report.md").read_text()
    assert "## The judge against the labels" in md
    assert re.search(
        r"\| labeled drafts \(pass/fail\) \| 10 \| 10 \(1\.00\) \| 0\.70 \| 0\.40 \|", md
    )
    assert "**generic-005**: labeled fail, judge says pass" in md
    assert "judge vs checks" in res.stdout
    row = r"│ {} +│ +10 │ +10 \(1\.00\) │ +{} │ +{} │"
    assert re.search(row.format("drafts", r"0\.70", r"0\.40"), res.stdout), res.stdout
    assert re.search(row.format("messages", r"0\.80", r"0\.60"), res.stdout), res.stdout
    assert "judge_agreement" not in res.stdout  # the table says it; the summary does not repeat


@pytest.mark.timeout(300)
def test_unusable_answers_lower_coverage_and_are_named(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    with ScriptedOpenAIServer(responder=_judge(_texts(*files), GARBAGE)) as srv:
        res = _eval(files, tmp_path / "r", _env(tmp_path, srv.base_url), "--judge")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    m = report["metrics"]
    # Drafts: good-004 and generic-005 unanswered; of the 8 left the judge is right on 7,
    # with 3 "pass" calls against 4 pass labels: p_e 0.5, kappa 0.75.
    assert m["judge_agreement.labeled.coverage"] == 0.8
    assert m["judge_agreement.labeled.accuracy"] == 0.875
    assert m["judge_agreement.labeled.kappa"] == 0.75
    # Messages: the fifth generic one unanswered; right on 8 of 9: kappa 32/41.
    assert m["judge_agreement.messages.coverage"] == 0.9
    assert m["judge_agreement.messages.accuracy"] == round(8 / 9, 4)
    assert m["judge_agreement.messages.kappa"] == round(32 / 41, 4)
    # The checks are measured over the same cases the judge answered.
    answered = [i for i in DRAFT_PASS + DRAFT_FAIL if i not in GARBAGE]
    acc, _ = _expected_checks(report, answered)
    assert m["judge_agreement.labeled.checks_accuracy"] == acc

    unanswered = {
        c["id"]: c["error"] for s in report["judge_agreement"] for c in s["cases"] if c["error"]
    }
    assert set(unanswered) == GARBAGE
    assert all(e.startswith("judge gave no usable answer") for e in unanswered.values())
    md = (tmp_path / "r" / "report.md").read_text()
    assert "no usable answer for 2 of 10" in md and "no usable answer for 1 of 10" in md
    assert "no usable answer for 2 of 10 cases of the labeled set" in res.stderr
    assert re.search(r"│ drafts +│ +10 │ +8 \(0\.80\) │ +0\.88 │ +0\.75 │", res.stdout)


@pytest.mark.timeout(300)
def test_without_judge_or_endpoint_nothing_is_calibrated(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    with ScriptedOpenAIServer(responder=_judge(_texts(*files), set())) as srv:
        plain = _eval(files, tmp_path / "plain", _env(tmp_path, srv.base_url))
        assert srv.requests == []  # no --judge: the model is not even asked
    assert plain.returncode == 0, plain.stderr
    report = json.loads((tmp_path / "plain" / "report.json").read_text())
    assert "judge_agreement" not in report
    assert not [k for k in report["metrics"] if k.startswith("judge")]
    assert "judge vs checks" not in plain.stdout

    # --judge with the embedded model: no calibration, and the report says why.
    bare = _eval(files, tmp_path / "bare", _env(tmp_path, None), "--judge")
    assert bare.returncode == 0, bare.stderr
    report2 = json.loads((tmp_path / "bare" / "report.json").read_text())
    assert report2["metrics"] == report["metrics"]
    assert any("not calibrated" in n for n in report2["notes"])
    assert "not calibrated" in bare.stderr


def test_a_message_without_research_is_shown_to_the_judge_as_such() -> None:
    """`message_items` hands the judge no facts, no account and no person."""
    from evals.judge_calibration import message_items

    pb = load_playbook()
    msgs = [m for m in load_messages(HELDOUT_MESSAGES) if m.id in MSG_PERS[:1]]
    (item,) = message_items(msgs, pb, ("Sam", "Acme"))
    assert isinstance(item.ctx, CheckContext)
    assert item.ctx.facts == () and item.ctx.account is None and item.ctx.contact is None
    assert item.label == "personalized" and item.channel == msgs[0].channel


@pytest.mark.timeout(300)
def test_the_playbook_rule_decides_the_judges_verdicts(
    tmp_path: Path, files: tuple[Path, Path]
) -> None:
    """With `pass_min` and `personalized_min` at 5, the planned grades (at most 4) are all
    "fail" and "generic": right on half of each set, and no better than chance (kappa 0)."""
    text = (ROOT / "gtm/domain/playbook.default.yaml").read_text(encoding="utf-8")
    strict = text.replace("    pass_min: 3\n", "    pass_min: 5\n").replace(
        "    personalized_min: 3\n", "    personalized_min: 5\n"
    )
    assert strict != text
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(strict, encoding="utf-8")
    with ScriptedOpenAIServer(responder=_judge(_texts(*files), set())) as srv:
        env = _env(tmp_path, srv.base_url) | {"GTM_PLAYBOOK": str(playbook)}
        res = _eval(files, tmp_path / "r", env, "--judge")
    assert res.returncode == 0, res.stdout + res.stderr
    m = json.loads((tmp_path / "r" / "report.json").read_text())["metrics"]
    for name in ("labeled", "messages"):
        assert m[f"judge_agreement.{name}.accuracy"] == 0.5
        assert m[f"judge_agreement.{name}.kappa"] == 0.0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "is at least 5 (playbook `evals.judge`)" in md
