"""The thread key: one LangGraph thread per account per campaign, or one per person reached there.

A campaign whose playbook reaches several people per account (`Playbook.contacts_per_account`)
gives each of them a slot: slot 0 keeps the one-thread-per-account id, so a campaign that reaches
one person has exactly the ids it always had; slot k > 0 appends `#k+1`.
"""

from __future__ import annotations

__all__ = ["thread_id_for"]


def thread_id_for(campaign: str, account_id: str, slot: int = 0) -> str:
    """The checkpoint thread id of `account_id`'s `slot`-th person in `campaign`; the ledger
    indexes it too."""
    if slot < 0:
        raise ValueError(f"slot must be 0 or more, not {slot}")
    base = f"{campaign}:{account_id}"
    return base if slot == 0 else f"{base}#{slot + 1}"
