"""The inbox pages: the queue (under the open red flags), one draft, a decision on it, a batch
approval, closing an escalation a person has handled, and dismissing a red flag.

Decisions go through the runner's `take_decision`, the same policy `gtm approve` meets; these
handlers only turn its refusals into pages (422 for what the policy refuses, 409 for a draft
that cannot take a decision now) and hand what it accepted to the background worker.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gtm.app.escalations import mark_done, open_store, time_left
from gtm.app.escalations import needs_human as open_escalations
from gtm.app.ledger import ThreadRow
from gtm.app.red_flags import dismiss_flag, open_flag_store, open_flags
from gtm.app.runner import (
    DecisionNotAllowed,
    DecisionRefused,
    NeedsConfirmation,
    pending_request,
    take_decision,
    thread_values,
    unsendable,
)
from gtm.app.sequence_status import sequence_standing
from gtm.app.waiting import PageError, page_number
from gtm.domain.models import Decision, Touch
from gtm.web.security import inbox_of, login_required, posted, session_of
from gtm.web.views import (
    QueueFilters,
    batch_allowed,
    build_queue,
    build_sequences,
    flag_rows,
    qualification_card,
    queue_after,
    queue_neighbours,
)

if TYPE_CHECKING:
    from gtm.web.app import WebInbox

__all__ = ["queue", "draft_page", "decide", "batch", "escalation_done", "flag_dismiss"]

VERB = {
    "approve": "Approved",
    "edit": "Edited and approved",
    "reject": "Rejected",
    "regenerate": "Sent back for a rewrite",
}

CONFIRM_FLAGGED = (
    "The guardrails flagged this draft. Tick the box to say you checked the findings and it is "
    "right to send as written, or edit it."
)


def _now() -> datetime:
    return datetime.now(UTC)


async def queue(request: Request) -> Response:
    session = session_of(request)
    if session is None:
        return login_required(request)
    inbox = inbox_of(request)
    filters = QueueFilters.parse(request.query_params)
    status, page_error = 200, ""
    try:
        number = page_number(request.query_params.get("page"))
    except PageError as exc:
        status, page_error, number = 400, str(exc), 1
    q = build_queue(inbox.rt.ledger, inbox.rt.playbook, filters, now=_now(), page=number)
    try:
        q.page.check()
    except PageError as exc:
        status, page_error = 404, str(exc)
    if page_error:
        q.groups = []
    recent = inbox.rt.ledger.recently_decided(limit=15)
    needs_human = inbox.rt.deps.outbox.entries(state="unknown")
    now = _now()
    escalations = [(e, time_left(e, now)) for e in open_escalations(inbox.rt)]
    flash, session.flash = session.flash, []
    return inbox.render(
        "queue.html",
        status=status,
        session=session,
        q=q,
        page_error=page_error[:1].upper() + page_error[1:],
        filters=filters,
        recent=recent,
        errors=inbox.worker.errors,
        needs_human=needs_human,
        escalations=escalations,
        red_flags=flag_rows(open_flags(inbox.rt)),
        sequences=build_sequences(inbox.rt.ledger, inbox.rt.playbook_for, filters),
        flash=flash,
        now=now,
    )


async def _draft_context(inbox: WebInbox, row: ThreadRow) -> dict[str, Any]:
    """Everything the draft view shows; empty if the draft is no longer waiting."""
    rt = inbox.rt
    asked = await pending_request(rt, row.thread_id)
    if asked is None:
        return {}
    values = await thread_values(rt, row.thread_id)
    draft, facts, contact = asked.draft, asked.facts, asked.contact
    account = values.get("account")
    crm: dict[str, Any] = {}
    try:
        if account is not None:
            crm["company"] = await rt.deps.crm.find_company(account.domain)
        crm["contact"] = await rt.deps.crm.find_contact(contact)
    except Exception as exc:  # noqa: BLE001 - the draft view still works without the CRM
        crm["error"] = f"{type(exc).__name__}: {exc}"
    touches: list[Touch] = [  # earlier touches: not research facts, not this thread's drafts
        t
        for t in await rt.deps.memory.history(row.account_id, limit=30)
        if t.kind != "fact" and not (t.kind == "draft" and t.campaign == row.campaign)
    ]
    return {
        "draft": draft,
        "cited": [f for fid in draft.cited_fact_ids for f in facts if f.id == fid],
        "missing_citations": [
            fid for fid in draft.cited_fact_ids if fid not in {f.id for f in facts}
        ],
        "other_facts": [f for f in facts if f.id not in draft.cited_fact_ids],
        "quarantined": list(values.get("quarantined") or []),
        "card": qualification_card(values),
        "findings": asked.findings,
        "spans": [s for fnd in asked.findings for s in fnd.spans],
        "unsendable": unsendable(asked),
        "contact": contact,
        "account": account,
        "crm": crm,
        "touches": touches,
    }


async def draft_page(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    notes: list[str] | None = None,
    edited: str | None = None,
) -> Response:
    session = session_of(request)
    if session is None:
        return login_required(request)
    inbox = inbox_of(request)
    row = inbox.rt.ledger.get(request.path_params["draft_id"])
    if row is None:
        return inbox.render(
            "message.html", status=404, title="No such draft", message="", session=session
        )
    filters = QueueFilters.parse(request.query_params)
    prev_id, next_id = queue_neighbours(inbox.rt.ledger, filters, row)
    open_ = row.status == "waiting_for_approval" and not row.deciding
    ctx = await _draft_context(inbox, row) if open_ else {}
    flash, session.flash = session.flash, []
    return inbox.render(
        "draft.html",
        status=status,
        session=session,
        row=row,
        filters=filters,
        prev_id=prev_id,
        next_id=next_id,
        batch_ok=batch_allowed(inbox.rt.playbook, row),
        error=error,
        notes=notes or [],
        edited=edited,
        flash=flash,
        worker_error=inbox.worker.errors.get(row.id),
        history=inbox.rt.ledger.history(row.thread_id),
        standing=sequence_standing(row, inbox.rt.playbook_for(row.campaign)),
        now=_now(),
        **ctx,
    )


def _decision(form: FormData, reviewer: str) -> Decision | str:
    """The decision a form asks for, or what is missing from it. Whether the draft may take it
    is `take_decision`'s call."""

    def text(name: str) -> str:
        v = form.get(name)
        return v.strip() if isinstance(v, str) else ""

    action = text("action")
    at = _now()
    if action == "approve":
        return Decision(action="approve", reviewer=reviewer, at=at)
    if action == "edit":
        return Decision(
            action="edit",
            text=text("text"),
            subject=text("subject") or None,
            reviewer=reviewer,
            at=at,
        )
    if action == "reject":
        if not text("reason"):
            return "Say why you reject it; the reason is kept for next time."
        return Decision(action="reject", reason=text("reason"), reviewer=reviewer, at=at)
    if action == "regenerate":
        if not text("instructions"):
            return "Say what the rewrite should change."
        return Decision(
            action="regenerate", instructions=text("instructions"), reviewer=reviewer, at=at
        )
    return f"Unknown action {action!r}."


async def decide(request: Request) -> Response:
    checked = await posted(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    inbox = inbox_of(request)
    decision = _decision(form, session.reviewer)
    if isinstance(decision, str):
        text = form.get("text")
        edited = text if isinstance(text, str) else None
        return await draft_page(request, status=422, error=decision, edited=edited)
    filters = QueueFilters.parse(request.query_params)
    # The queue as it stands before the decision: where to go next once this draft has left it.
    current = inbox.rt.ledger.get(request.path_params["draft_id"])
    nxt = queue_after(inbox.rt.ledger, filters, current) if current is not None else None
    try:
        taken = await take_decision(
            inbox.rt,
            request.path_params["draft_id"],
            decision,
            confirmed=form.get("confirm") == "yes",
        )
    except NeedsConfirmation:
        return await draft_page(request, status=422, error=CONFIRM_FLAGGED)
    except DecisionRefused as exc:
        status = 422 if isinstance(exc, DecisionNotAllowed) else 409
        edited = decision.text if decision.action == "edit" else None
        why = str(exc)
        return await draft_page(
            request, status=status, error=why[:1].upper() + why[1:], edited=edited
        )
    row = taken.row
    inbox.worker.submit(row)
    session.flash.append(("ok", f"{VERB[decision.action]} #{row.id} {row.company}."))
    session.flash += [("note", f"Note on #{row.id}: {n}") for n in taken.notes]
    target = f"/drafts/{nxt}" if nxt is not None else "/"
    qs = filters.query()
    return RedirectResponse(f"{target}?{qs}" if qs else target, status_code=303)


async def batch(request: Request) -> Response:
    """Approve the ticked drafts of batch-review tiers; flagged ones are never among them."""
    checked = await posted(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    inbox = inbox_of(request)
    filters = QueueFilters.parse(request.query_params)
    approved, refused = [], []
    for raw in form.getlist("ids"):
        row = inbox.rt.ledger.get(raw) if isinstance(raw, str) and raw.isdigit() else None
        if row is None:
            refused.append(f"#{raw}: no such draft")
            continue
        if not batch_allowed(inbox.rt.playbook, row):
            why = "flagged by the guardrails" if row.flagged else "its tier needs one-by-one review"
            refused.append(f"#{row.id} {row.company}: {why}")
            continue
        decision = Decision(action="approve", reviewer=session.reviewer, at=_now())
        try:
            taken = await take_decision(inbox.rt, row.id, decision, confirmed=False)
        except DecisionRefused as exc:
            refused.append(str(exc))
            continue
        inbox.worker.submit(taken.row)
        approved.append(f"#{taken.row.id}")
    if approved:
        session.flash.append(("ok", f"Batch-approved {len(approved)}: {', '.join(approved)}."))
    if not approved and not refused:
        session.flash.append(("note", "Nothing was selected."))
    session.flash += [("error", f"Not approved: {r}") for r in refused]
    qs = filters.query()
    return RedirectResponse(f"/?{qs}" if qs else "/", status_code=303)


async def escalation_done(request: Request) -> Response:
    """Close an escalation a person has handled, as `gtm escalations done` does (the same
    `mark_done`, the signed-in reviewer recorded). Closing one already closed changes
    nothing and says who closed it."""
    checked = await posted(request)
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    inbox = inbox_of(request)
    esc_id: int = request.path_params["esc_id"]
    with open_store(inbox.rt) as store:
        before = store.get(esc_id) if 0 < esc_id < 2**63 else None
    if before is None:
        session.flash.append(("error", f"No escalation {esc_id}."))
    elif before.done:
        when = f" at {before.done_at:%Y-%m-%d %H:%M} UTC" if before.done_at else ""
        session.flash.append(
            ("note", f"Escalation {esc_id} was already closed by {before.done_by or '?'}{when}.")
        )
    else:
        esc = mark_done(inbox.rt, esc_id, session.reviewer)
        if esc is not None and esc.done_by != session.reviewer:  # someone closed it meanwhile
            session.flash.append(("note", f"Escalation {esc_id} was closed by {esc.done_by}."))
        elif esc is not None:
            who = f"{esc.signal.replace('_', ' ')}, {esc.contact}"
            session.flash.append(("ok", f"Escalation {esc_id} ({who}) marked done."))
    qs = QueueFilters.parse(request.query_params).query()
    return RedirectResponse(f"/?{qs}" if qs else "/", status_code=303)


async def flag_dismiss(request: Request) -> Response:
    """Dismiss a red flag a person has seen and acted on, as `gtm flags dismiss` does (the same
    `dismiss_flag`, the signed-in reviewer recorded). Dismissing one already dismissed changes
    nothing and says so. Back to the report page when it was sent from there."""
    checked = await posted(request)
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    inbox = inbox_of(request)
    flag_id: int = request.path_params["flag_id"]
    with open_flag_store(inbox.rt) as store:
        found = [f for f in store.listing(include_dismissed=True) if f.id == flag_id]
    if not found:
        session.flash.append(("error", f"No red flag {flag_id}."))
    elif (before := found[0]).dismissed_at is not None:
        when = f"{before.dismissed_at:%Y-%m-%d %H:%M} UTC"
        session.flash.append(("note", f"Red flag {flag_id} was already dismissed at {when}."))
    else:
        dismiss_flag(inbox.rt, flag_id, session.reviewer)
        what = f"{before.campaign}, week of {before.week:%Y-%m-%d}"
        session.flash.append(("ok", f"Red flag {flag_id} ({what}) dismissed."))
    if request.query_params.get("back") == "report":
        return RedirectResponse("/report", status_code=303)
    qs = QueueFilters.parse(request.query_params).query()
    return RedirectResponse(f"/?{qs}" if qs else "/", status_code=303)
