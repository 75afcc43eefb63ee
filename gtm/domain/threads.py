"""The thread key: one LangGraph thread per account per campaign."""

from __future__ import annotations

__all__ = ["thread_id_for"]


def thread_id_for(campaign: str, account_id: str) -> str:
    """The checkpoint thread id of `account_id` in `campaign`; the ledger indexes it too."""
    return f"{campaign}:{account_id}"
