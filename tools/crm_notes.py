"""The note format the hosted CRM clients (HubSpot, Attio) share.

Neither CRM has idempotency keys, so every note and task we write ends with a reference line,
`gtm ref gtm<hash> · <kind> · key <key>`: the token is one searchable word per idempotency key
(a write looks for it first), and the kind and key let `activities()` read our own notes back
as `Activity` and pass over the ones a person wrote. A subject, when there is one, opens the
body as `Subject: ...` and a blank line.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

from tools.crm import Activity, ActivityKind, Task

__all__ = ["token_for", "encode_note", "encode_task", "decode_note", "utc_z"]

_REF = re.compile(r"gtm ref (gtm[0-9a-f]{16}) · (\w+) · key (.+)$", re.M)


def token_for(key: str) -> str:
    """One search token per idempotency key (letters and digits only, so it stays one token)."""
    return "gtm" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _ref(key: str, kind: str) -> str:
    return f"gtm ref {token_for(key)} · {kind} · key {key}"


def encode_note(activity: Activity) -> str:
    """A touch as a note body: subject, text, reference line."""
    head = f"Subject: {activity.subject}\n\n" if activity.subject else ""
    return f"{head}{activity.body}\n\n{_ref(activity.key, activity.kind)}"


def encode_task(task: Task) -> str:
    return f"{task.title}\n\n{_ref(task.key, 'task')}"


def decode_note(text: str, *, company_id: str, at: str) -> Activity | None:
    """The touch a note of ours records (`at` as the CRM stamps it, ISO 8601), or None for a
    note a person wrote."""
    m = _REF.search(text)
    if not m:
        return None
    body = text[: m.start()].rstrip()
    subject = None
    if body.startswith("Subject: ") and "\n\n" in body:
        head, body = body.split("\n\n", 1)
        subject = head.removeprefix("Subject: ")
    kind: ActivityKind = m.group(2)  # type: ignore[assignment]
    return Activity(
        key=m.group(3).strip(),
        company_id=company_id,
        kind=kind,
        subject=subject,
        body=body,
        at=datetime.fromisoformat(at.replace("Z", "+00:00")),
    )


def utc_z(at: datetime) -> str:
    """A time as both CRMs take it: ISO 8601 in UTC with a `Z`."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
