"""Guardrail checks and (later) the eval harness: message quality against the playbook."""

from evals.checks import ALL_CHECKS
from evals.guardrails import review_draft, revision_instructions

__all__ = ["ALL_CHECKS", "review_draft", "revision_instructions"]
