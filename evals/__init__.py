"""Message quality against the playbook: the guardrail checks, datasets, scoring and the judge
(with its agreement with the labels: modules `agreement` and `judge_calibration`).

The review agent calls `review_draft`; `gtm eval` (`gtm.app.evaluate`) scores labeled drafts
and the drafts it generates with the rest. `evals` sits below the agents and never imports
them: whatever needs the writer lives in the application.
"""

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
