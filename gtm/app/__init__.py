"""The application: assembles a workspace and drives campaigns, decisions, evals and erasure.

Above the agents, below the interfaces (CLI and web). Runner, workspace, provider factory,
evaluate, privacy and doctor live here, with the ledger, settings and model wiring they use.
Listed here are the public modules, imported on demand.
"""

__all__ = [
    "accounts",
    "crm_lists",
    "campaigns",
    "cassette",
    "cassette_diff",
    "charts",
    "checkpoints",
    "doctor",
    "escalation_pass",
    "escalations",
    "evaluate",
    "funnel",
    "funnel_model",
    "funnel_specificity",
    "funnel_weeks",
    "ledger",
    "lint",
    "list_columns",
    "llm",
    "loop",
    "loop_pass",
    "privacy",
    "providers",
    "red_flags",
    "report",
    "report_charts",
    "report_words",
    "runner",
    "sequence_status",
    "sequences",
    "server_graph",
    "settings",
    "sync",
    "waiting",
    "workspace",
]
