"""Message quality against the playbook: the guardrail checks, datasets, scoring and the judge
(with its agreement with the labels: modules `agreement` and `judge_calibration`).

The review agent calls `review_draft`; `gtm eval` (`gtm.app.evaluate`) scores labeled drafts
and the drafts it generates with the rest. `evals` sits below the agents and never imports
them: whatever needs the writer lives in the application.

The names below are imported from their modules when first asked for (PEP 562), so a command
that needs one module (`gtm inbox` reads `evals.replies`) does not load the judge, the harness
and their model libraries with it.
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from evals.checks import ALL_CHECKS, CHECK_NAMES
    from evals.context import Check, CheckContext, Peer
    from evals.datasets import (
        DEFAULT_DATASETS,
        DatasetError,
        Datasets,
        GenerationCase,
        LabeledCase,
        ReplyCase,
        load_datasets,
    )
    from evals.guardrails import review_draft, revision_instructions
    from evals.harness import (
        BatchItem,
        Embedder,
        Regression,
        Report,
        ScoredDraft,
        case_context,
        compare,
        generation_metrics,
        labeled_metrics,
        score_batch,
        score_labeled,
        scored_draft,
        write_reports,
    )
    from evals.judge import DIMENSIONS, JudgeScores, judge_draft
    from evals.replies import (
        ClassifiedReply,
        ReplyAnswer,
        classify,
        new_text,
        opt_out,
        out_of_office,
        unquoted_text,
    )
    from evals.reply_classifier import classify_reply
    from evals.reply_scores import (
        ScoredReply,
        reply_floor_breaches,
        reply_metrics,
        score_replies,
    )

_HOME = {  # exported name -> the module of this package that defines it
    "ALL_CHECKS": "checks",
    "CHECK_NAMES": "checks",
    "Check": "context",
    "CheckContext": "context",
    "Peer": "context",
    "DEFAULT_DATASETS": "datasets",
    "DatasetError": "datasets",
    "Datasets": "datasets",
    "GenerationCase": "datasets",
    "LabeledCase": "datasets",
    "ReplyCase": "datasets",
    "load_datasets": "datasets",
    "review_draft": "guardrails",
    "revision_instructions": "guardrails",
    "BatchItem": "harness",
    "Embedder": "harness",
    "Regression": "harness",
    "Report": "harness",
    "ScoredDraft": "harness",
    "case_context": "harness",
    "compare": "harness",
    "generation_metrics": "harness",
    "labeled_metrics": "harness",
    "score_batch": "harness",
    "score_labeled": "harness",
    "scored_draft": "harness",
    "write_reports": "harness",
    "DIMENSIONS": "judge",
    "JudgeScores": "judge",
    "judge_draft": "judge",
    "ClassifiedReply": "replies",
    "ReplyAnswer": "replies",
    "classify": "replies",
    "new_text": "replies",
    "opt_out": "replies",
    "out_of_office": "replies",
    "unquoted_text": "replies",
    "classify_reply": "reply_classifier",
    "ScoredReply": "reply_scores",
    "reply_floor_breaches": "reply_scores",
    "reply_metrics": "reply_scores",
    "score_replies": "reply_scores",
}


def __getattr__(name: str) -> object:
    """Import an exported name's module on first use, and keep the name bound here."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "ALL_CHECKS",
    "CHECK_NAMES",
    "DEFAULT_DATASETS",
    "DIMENSIONS",
    "BatchItem",
    "Check",
    "CheckContext",
    "ClassifiedReply",
    "DatasetError",
    "Datasets",
    "Embedder",
    "GenerationCase",
    "JudgeScores",
    "LabeledCase",
    "Peer",
    "Regression",
    "ReplyAnswer",
    "ReplyCase",
    "Report",
    "ScoredDraft",
    "ScoredReply",
    "agreement",
    "case_context",
    "classify",
    "classify_reply",
    "compare",
    "generation_metrics",
    "judge_calibration",
    "judge_draft",
    "labeled_metrics",
    "load_datasets",
    "messages",
    "new_text",
    "opt_out",
    "out_of_office",
    "reply_floor_breaches",
    "reply_metrics",
    "review_draft",
    "revision_instructions",
    "score_batch",
    "score_labeled",
    "score_replies",
    "scored_draft",
    "unquoted_text",
    "write_reports",
]
