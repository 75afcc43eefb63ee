"""`gtm eval`: put the harness together with settings, the model and a baseline.

The scoring lives in `evals`; writing the generation set's drafts needs the agents (the same
personalize → review loop as `gtm run`), so it lives here, one layer above both.

Generation runs in a throw-away data directory (its own Chroma, CRM and checkpoints), so an
eval never touches a real campaign. The model samples at temperature 0 with a fixed seed, so a
rerun on the same machine writes the same drafts.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.context import Deps
from agents.graph import build_writer_graph
from agents.personalize import PROMPT_FOR_STEP
from agents.state import State
from evals import (
    DEFAULT_DATASETS,
    BatchItem,
    ClassifiedReply,
    Embedder,
    GenerationCase,
    JudgeScores,
    LabeledCase,
    Regression,
    ReplyCase,
    Report,
    ScoredDraft,
    case_context,
    classify_reply,
    compare,
    generation_metrics,
    judge_draft,
    labeled_metrics,
    load_datasets,
    reply_floor_breaches,
    reply_metrics,
    score_batch,
    score_labeled,
    score_replies,
    scored_draft,
    write_reports,
)
from evals.judge import draft_text
from evals.judge_calibration import (
    JudgeAgreement,
    SetName,
    ToJudge,
    judge_set,
    message_items,
)
from evals.messages import HELDOUT_MESSAGES, LabeledMessage, load_messages
from evals.reply_classifier import PROMPT as REPLY_PROMPT
from gtm.app.cassette import Cassette, CassetteMiss
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.playbook import Playbook, load_playbook
from memory.embedding import MiniLMEmbedding
from prompts import load_prompt

__all__ = [
    "BaselineError",
    "EvalOptions",
    "run_eval",
    "classify_replies",
    "generate",
    "prompt_versions",
    "load_baseline",
    "save_baseline",
    "EVAL_SEED",
    "calibrate_judge",
    "labeled_items",
]

EVAL_SEED = 7


class BaselineError(ValueError):
    """The baseline file cannot be read."""


@dataclass(frozen=True)
class EvalOptions:
    datasets: tuple[Path, ...] = (DEFAULT_DATASETS,)
    prompt_version: str | None = None
    prompts_dir: Path | None = None
    model: str | None = None
    judge: bool = False
    baseline: Path | None = None
    out: Path = Path("eval-report")
    generate: bool = True
    judge_messages: tuple[Path, ...] = (HELDOUT_MESSAGES,)
    """Labeled messages the judge is calibrated on (with `judge` and a model endpoint)."""
    record: Path | None = None
    """Record the model's answers in this cassette (saved only when the run succeeds)."""
    replay: Path | None = None
    """Answer every model request from this cassette: no endpoint, no model started."""


def load_baseline(path: Path) -> tuple[dict[str, float], str]:
    """The baseline's metrics and the model that produced its generation metrics."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        metrics = data["metrics"]
        return {str(k): float(v) for k, v in metrics.items()}, str(data.get("model", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BaselineError(f"{path}: not a readable baseline ({exc})") from None


async def generate(
    cases: Sequence[GenerationCase],
    deps: Deps,
    *,
    embed: Embedder | None,
    judge: bool,
    campaign: str = "eval",
    on_progress: Callable[[str], None] = lambda _id: None,
) -> tuple[list[ScoredDraft], dict[str, Any]]:
    """Write a draft for every account with the writer loop, then score them as one batch."""
    graph = build_writer_graph()
    sender = (deps.sender_name, deps.sender_company)
    items: list[BatchItem] = []
    revisions: list[int] = []
    for case in cases:
        ctx = case_context(case, deps.playbook, sender)
        assert ctx.account is not None
        state = State(
            campaign=campaign,
            channel=case.channel,
            account=ctx.account,
            contact=case.contact,
            tier=deps.playbook.tier_of(ctx.account),
            facts=list(case.facts),
        )
        try:
            out = await graph.ainvoke(state, context=deps)
        except CassetteMiss:  # kept in the cassette's misses; the report lists every one
            continue
        draft = out["draft"]
        items.append(BatchItem(case.id, draft, ctx))
        revisions.append(int(out.get("revisions", 0)))
        on_progress(case.id)
    reviews, verdict = score_batch(items, deps.playbook, embed)
    scored = []
    for item, review, revs in zip(items, reviews, revisions, strict=True):
        extra: dict[str, Any] = {"revisions": revs, "batch": campaign}
        if judge:
            try:
                got = await judge_draft(
                    deps.model, item.draft, item.ctx, prompts_dir=deps.prompts_dir
                )
            except CassetteMiss as miss:
                got = f"not in the cassette ({'; '.join(miss.reasons) or 'not recorded'})"
            extra["judge"] = got.model_dump() if isinstance(got, JudgeScores) else {"error": got}
        scored.append(scored_draft(item, review, **extra))
    return scored, verdict


async def classify_replies(
    cases: Sequence[ReplyCase],
    deps: Deps,
    *,
    on_progress: Callable[[str], None] = lambda _id: None,
) -> dict[str, ClassifiedReply]:
    """Every labeled reply through the full classifier (rules, then the model), by case id."""
    out: dict[str, ClassifiedReply] = {}
    for case in cases:
        try:
            out[case.id] = await classify_reply(
                deps.model,
                case.body,
                headers=case.headers,
                playbook=deps.playbook,
                prompts_dir=deps.prompts_dir,
            )
        except CassetteMiss:  # kept in the cassette's misses; the report lists every one
            continue
        on_progress(case.id)
    return out


def prompt_versions(
    prompts_dir: Path | None, version: str | None, *, replies: bool = False
) -> dict[str, str]:
    """The prompts a run uses, as 'name@version' refs, for the report: the writer's (at
    `version`), and the reply classifier's when the run scores replies (`--prompt-version`
    names a writer version; the classifier is always at its current one)."""
    names = sorted(set(PROMPT_FOR_STEP.values()))
    refs = {n: load_prompt(n, prompts_dir, version=version).ref for n in names}
    if replies:
        refs[REPLY_PROMPT] = load_prompt(REPLY_PROMPT, prompts_dir).ref
    return refs


def save_baseline(report: Report, path: Path) -> None:
    data = {
        "created_at": report.created_at.isoformat(timespec="seconds"),
        "model": report.model,
        "prompt_versions": report.prompt_versions,
        "datasets": report.datasets,
        "metrics": dict(sorted(report.metrics.items())),
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def labeled_items(
    cases: Sequence[LabeledCase],
    scored: Sequence[ScoredDraft],
    playbook: Playbook,
    sender: tuple[str, str],
) -> list[ToJudge]:
    """The labeled drafts as cases for the judge, with the checks' verdict on each."""
    return [
        ToJudge(
            id=c.id,
            text=draft_text(c.as_draft()),
            channel=c.as_draft().step,
            ctx=case_context(c, playbook, sender),
            label=c.expected.verdict,
            checks="fail" if s.failing else "pass",
        )
        for c, s in zip(cases, scored, strict=True)
    ]


async def calibrate_judge(
    deps: Deps,
    labeled: Sequence[ToJudge],
    messages: Sequence[ToJudge],
    *,
    on_progress: Callable[[str], None] = lambda _id: None,
) -> list[JudgeAgreement]:
    """The judge on the labeled drafts and the labeled messages, each set that has cases."""
    rule = deps.playbook.evals.judge
    sets: tuple[tuple[SetName, Sequence[ToJudge]], ...] = (
        ("labeled", labeled),
        ("messages", messages),
    )
    out = []
    for name, items in sets:
        if not items:
            continue
        try:
            out.append(
                await judge_set(
                    deps.model,
                    name,
                    items,
                    rule,
                    prompts_dir=deps.prompts_dir,
                    on_progress=on_progress,
                )
            )
        except CassetteMiss:  # that set is not measured; the report lists every miss
            continue
    return out


_NOT_CALIBRATED = (
    "the judge was not calibrated against the labels: that needs a model endpoint "
    "(GTM_MODEL_BASE_URL); the embedded model grades the generated drafts only"
)


async def run_eval(
    settings: Settings,
    opts: EvalOptions,
    *,
    on_progress: Callable[[str], None] = lambda _id: None,
    on_judged: Callable[[str], None] = lambda _id: None,
) -> Report:
    pb = load_playbook(settings.playbook)
    ds = load_datasets(opts.datasets)
    messages: list[LabeledMessage] = []
    for path in opts.judge_messages if opts.judge else ():
        messages += load_messages(path)
    if opts.record and opts.replay:
        raise ValueError("record or replay a cassette, not both")
    cassette = None
    if (tape := opts.record or opts.replay) is not None:
        cassette = Cassette.open(
            tape, "record" if opts.record else "replay", prompts_dir=opts.prompts_dir
        )
    # The judge is calibrated with a real model: an endpoint, or the answers one gave.
    replayed = cassette is not None and cassette.mode == "replay"
    hosted = bool(settings.model_base_url) or (
        replayed and cassette is not None and "embedded" not in cassette.description
    )
    calibrate = opts.judge and hosted and bool(ds.labeled or messages)
    versions = prompt_versions(opts.prompts_dir, opts.prompt_version, replies=bool(ds.replies))
    baseline = load_baseline(opts.baseline) if opts.baseline else None
    embedder = MiniLMEmbedding()
    sender = (settings.sender_name, settings.sender_company)
    labeled, batches = score_labeled(ds.labeled, pb, embed=embedder.embed, sender=sender)
    metrics = labeled_metrics(labeled)
    generation: list[ScoredDraft] = []
    classified: dict[str, ClassifiedReply] | None = None
    verdict: dict[str, Any] | None = None
    judged: list[JudgeAgreement] = []
    model = "none (no generation)"
    if (opts.generate and (ds.generation or ds.replies)) or calibrate:
        with tempfile.TemporaryDirectory(prefix="gtm-eval-") as tmp:
            run_settings = settings.with_overrides(
                data_dir=Path(tmp),
                model=opts.model,
                model_temperature=0.0,
                model_seed=EVAL_SEED,
            )
            async with open_workspace(
                run_settings,
                with_model=True,
                playbook=pb,
                prompts_dir=opts.prompts_dir,
                prompt_version=opts.prompt_version,
                cassette=cassette,
            ) as rt:
                model = rt.model_description
                if opts.generate and ds.generation:
                    generation, verdict = await generate(
                        ds.generation,
                        rt.deps,
                        embed=embedder.embed,
                        judge=opts.judge,
                        on_progress=on_progress,
                    )
                if opts.generate and ds.replies:
                    classified = await classify_replies(
                        ds.replies, rt.deps, on_progress=on_progress
                    )
                if calibrate:
                    judged = await calibrate_judge(
                        rt.deps,
                        labeled_items(ds.labeled, labeled, pb, sender),
                        message_items(messages, pb, sender),
                        on_progress=on_judged,
                    )
    if verdict is not None:
        batches["generation"] = verdict
        metrics |= generation_metrics(generation, verdict)
    replies = score_replies(ds.replies, pb, classified)
    metrics |= reply_metrics(replies)
    for agreed in judged:
        metrics |= agreed.metrics()
    report = Report(
        created_at=datetime.now(UTC),
        model=model,
        prompt_versions=versions,
        datasets=list(ds.files),
        metrics=metrics,
        labeled=labeled,
        generation=generation,
        replies=replies,
        batches=batches,
        baseline=str(opts.baseline) if opts.baseline else None,
        max_regression=pb.evals.max_regression,
        judge_agreement=judged,
    )
    if opts.judge and not hosted and (ds.labeled or messages):
        report.notes.append(_NOT_CALIBRATED)
    if cassette is not None:
        report.replay_misses = [str(m) for m in cassette.misses]
        if cassette.mode == "replay" and (stale := cassette.unused()):
            report.notes.append(
                f"{len(stale)} recorded answer(s) in {cassette.path} were not asked for "
                "(prompts or cases changed); `--record` prunes them"
            )
        if cassette.mode == "record" and not cassette.misses:
            cassette.save()
    if baseline is not None:
        base, base_model = baseline
        if (generation or classified is not None or judged) and base_model != model:
            # Drafts from another model are not the same experiment: only the checks'
            # own metrics (labeled) are compared.
            report.notes.append(
                f"the baseline's drafts came from {base_model or 'an unknown model'}, these from "
                f"{model}: generation metrics were not compared (refresh the baseline with "
                "`make baseline` if the model change is intended)"
            )
            base = {
                k: v
                for k, v in base.items()
                if not k.startswith(("generation.", "judge.", "judge_agreement.", "replies."))
            }
        report.baseline_metrics = base
        report.regressions, report.untracked_in_baseline = compare(metrics, base, pb)
    # A floor, not a comparison: the rules must catch every labeled opt-out, baseline or not.
    report.regressions += [
        Regression(metric=k, baseline=need, current=got, allowed=0.0)
        for k, need, got in reply_floor_breaches(metrics)
        if k not in {g.metric for g in report.regressions}
    ]
    write_reports(report, opts.out)
    return report
