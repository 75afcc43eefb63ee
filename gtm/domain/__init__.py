"""The domain: models, the playbook and its default YAML, the thread key, the approval request.

Pure pydantic and no I/O beyond reading a playbook file. Every other layer speaks in these types,
and nothing here imports from any other part of gtm-agents.
"""

from gtm.domain.approval import ApprovalRequest, Finding
from gtm.domain.events import Event, EventKind, ReplySignal
from gtm.domain.models import (
    Account,
    AccountStatus,
    Channel,
    CheckResult,
    Contact,
    Decision,
    DecisionAction,
    Draft,
    Fact,
    FactKind,
    OutboxEntry,
    OutboxState,
    Receipt,
    Review,
    SkipReason,
    Step,
    Touch,
    TouchFacts,
    idempotency_key,
)
from gtm.domain.playbook import Playbook, PlaybookError, TierMatch, load_playbook
from gtm.domain.qualification import Qualification
from gtm.domain.threads import thread_id_for

__all__ = [
    "Account",
    "AccountStatus",
    "ApprovalRequest",
    "Channel",
    "CheckResult",
    "Contact",
    "Decision",
    "DecisionAction",
    "Draft",
    "Event",
    "EventKind",
    "Fact",
    "FactKind",
    "Finding",
    "OutboxEntry",
    "OutboxState",
    "Playbook",
    "PlaybookError",
    "Qualification",
    "Receipt",
    "ReplySignal",
    "Review",
    "SkipReason",
    "Step",
    "TierMatch",
    "Touch",
    "TouchFacts",
    "idempotency_key",
    "load_playbook",
    "thread_id_for",
]
