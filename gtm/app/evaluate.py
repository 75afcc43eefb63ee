"""`gtm eval`: put the harness together with settings, the model and a baseline.

Generation runs in a throw-away data directory (its own Chroma, CRM and checkpoints), so an
eval never touches a real campaign. The model samples at temperature 0 with a fixed seed, so a
rerun on the same machine writes the same drafts.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evals.datasets import DEFAULT_DATASETS, load_datasets
from evals.harness import (
    Report,
    ScoredDraft,
    compare,
    generate,
    generation_metrics,
    labeled_metrics,
    now,
    prompt_versions,
    score_labeled,
    write_reports,
)
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.playbook import load_playbook
from memory.embedding import MiniLMEmbedding

__all__ = [
    "BaselineError",
    "EvalOptions",
    "run_eval",
    "load_baseline",
    "save_baseline",
    "EVAL_SEED",
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


def load_baseline(path: Path) -> tuple[dict[str, float], str]:
    """The baseline's metrics and the model that produced its generation metrics."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        metrics = data["metrics"]
        return {str(k): float(v) for k, v in metrics.items()}, str(data.get("model", ""))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BaselineError(f"{path}: not a readable baseline ({exc})") from None


def save_baseline(report: Report, path: Path) -> None:
    data = {
        "created_at": report.created_at.isoformat(timespec="seconds"),
        "model": report.model,
        "prompt_versions": report.prompt_versions,
        "datasets": report.datasets,
        "metrics": dict(sorted(report.metrics.items())),
    }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


async def run_eval(
    settings: Settings,
    opts: EvalOptions,
    *,
    on_progress: Callable[[str], None] = lambda _id: None,
) -> Report:
    pb = load_playbook(settings.playbook)
    ds = load_datasets(opts.datasets)
    versions = prompt_versions(opts.prompts_dir, opts.prompt_version)
    baseline = load_baseline(opts.baseline) if opts.baseline else None
    embedder = MiniLMEmbedding()
    sender = (settings.sender_name, settings.sender_company)
    labeled, batches = score_labeled(ds.labeled, pb, embed=embedder.embed, sender=sender)
    metrics = labeled_metrics(labeled)
    generation: list[ScoredDraft] = []
    model = "none (no generation)"
    if opts.generate and ds.generation:
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
            ) as rt:
                model = rt.model_description
                generation, verdict = await generate(
                    ds.generation,
                    rt.deps,
                    embed=embedder.embed,
                    judge=opts.judge,
                    on_progress=on_progress,
                )
        batches["generation"] = verdict
        metrics |= generation_metrics(generation, verdict)
    report = Report(
        created_at=now(),
        model=model,
        prompt_versions=versions,
        datasets=list(ds.files),
        metrics=metrics,
        labeled=labeled,
        generation=generation,
        batches=batches,
        baseline=str(opts.baseline) if opts.baseline else None,
        max_regression=pb.evals.max_regression,
    )
    if baseline is not None:
        base, base_model = baseline
        if generation and base_model != model:
            # Drafts from another model are not the same experiment: only the checks'
            # own metrics (labeled) are compared.
            report.notes.append(
                f"the baseline's drafts came from {base_model or 'an unknown model'}, these from "
                f"{model}: generation metrics were not compared (refresh the baseline with "
                "`make baseline` if the model change is intended)"
            )
            base = {k: v for k, v in base.items() if not k.startswith(("generation.", "judge."))}
        report.baseline_metrics = base
        report.regressions, report.untracked_in_baseline = compare(metrics, base, pb)
    write_reports(report, opts.out)
    return report
