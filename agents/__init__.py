"""The agents: one module per graph node, the rules nodes share (pacing and caps,
eligibility), the state, the typed context, and the wiring.
The graph (`agents.graph`) reads like the diagram in DESIGN.md; nodes get every dependency
through `agents.context.Deps`. Listed here are the public modules, imported on demand.
"""

__all__ = [
    "approve",
    "context",
    "eligibility",
    "followup",
    "graph",
    "intake",
    "pacing",
    "personalize",
    "qualify",
    "record",
    "research",
    "review",
    "same_account",
    "send",
    "state",
    "steps",
    "web_facts",
]
