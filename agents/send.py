"""Send: perform the approved actions exactly once, within the playbook's caps.

Every action is reserved in the outbox under its idempotency key *before* the provider call.
An action found `pending` on entry means an earlier attempt died between the call and the record:
it becomes `unknown` and is never retried automatically. The caps and pacing come from
`agents.pacing`; suppression is checked again here (`agents.eligibility`) right before sending,
and the cooldown against other campaigns is decided by the reservation itself, under the
outbox's write lock, so two campaigns approved at once cannot both reach one person.

After the reservation the entry never stays `pending` because of us: a problem found before the
provider call marks it `failed` with the reason; an error the channel did not classify marks it
`unknown` (the call may have acted), for a human.

A follow-up (a sequence step after the first touch) is also stopped here when a reply, opt-out,
bounce or meeting of the person reached the event store while it waited (`agents.followup`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from langgraph.runtime import Runtime

from agents.context import Deps
from agents.eligibility import cooldown_detail, cooldowns, suppression_reason
from agents.followup import stop_reason, thread_keys
from agents.pacing import limits_for, next_opening, paced, steps_for
from agents.state import State
from gtm.domain.identity import profile_url
from gtm.domain.models import Receipt, Step, TouchFacts, idempotency_key
from tools.channels import ChannelError
from tools.smtp import MessageError, check_recipient
from tools.suppression import email_address

__all__ = ["send"]


def _prepare(deps: Deps, state: State, step: Step, key: str) -> Callable[[], Awaitable[Receipt]]:
    """The provider call for one step, its arguments checked first. Raising here means nothing
    reached the provider (e.g. an email whose recipient name holds a line break)."""
    draft, contact = state.draft, state.contact
    assert draft is not None and contact is not None
    url = contact.linkedin_url or ""
    if step == "linkedin_visit":
        return lambda: deps.linkedin.visit(url, key=key)
    if step == "linkedin_connect":
        return lambda: deps.linkedin.connect(url, draft.body, key=key)
    if step == "linkedin_message":
        return lambda: deps.linkedin.message(url, draft.body, key=key)
    to, subject = contact.email or "", draft.subject or ""
    check_recipient(to=to, to_name=contact.name, subject=subject)
    return lambda: deps.email.send(
        to=to, to_name=contact.name, subject=subject, body=draft.body, key=key
    )


def touch_facts(state: State) -> TouchFacts:
    """What the outbox keeps beside each action of this send: the address it goes to (what an
    accept or a reply is matched by), the sequence position, the tier, the prompt that wrote it
    and the review's judgement of the text as approved (what the funnel is broken down by)."""
    draft, contact, review = state.draft, state.contact, state.review
    assert draft is not None and contact is not None
    linkedin = draft.channel == "linkedin"
    address = contact.linkedin_url if linkedin else contact.email
    recipient = (profile_url(address) if linkedin else email_address(address)) if address else None
    judged = {r.check: r.score for r in review.results} if review is not None else {}
    specific = judged.get("genericness")  # the check scores specificity: 1 - genericness
    return TouchFacts(
        recipient=recipient,
        position=state.sequence_position,
        tier=state.tier.tier if state.tier else None,
        prompt_version=draft.prompt_version,
        genericness=round(1 - specific, 4) if specific is not None else None,
        verdict=None if review is None else "clean" if review.passed else "findings",
    )


def _said(exc: BaseException) -> str:
    """An unexpected error in a few words for the outbox and the events (never a traceback)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


async def send(state: State, runtime: Runtime[Deps]) -> dict[str, Any]:
    deps = runtime.context
    draft, contact = state.draft, state.contact
    assert draft is not None and contact is not None

    blocked = await suppression_reason(
        deps, state.account, contact, state.campaign, outbox_cooldown=False
    )
    if blocked is None and state.sequence_position:
        # A follow-up: if anything came back since it was due, the sequence is over. Without an
        # event store to ask, it is not sent blind.
        keys = thread_keys(deps.outbox, state.campaign, state.account.account_id, contact.key)
        ended = (
            stop_reason(deps.events, contact, keys)
            if deps.events is not None
            else "no event store to check for a reply; a follow-up is not sent blind"
        )
        blocked = ("sequence_stopped", ended) if ended is not None else None
    if blocked is not None:
        reason, detail = blocked
        return {
            "status": "skipped",
            "skip_reason": reason,
            "skip_detail": f"at send time: {detail}",
            "events": [f"send: blocked at send time ({reason}): {detail}"],
        }

    channel = deps.linkedin if draft.channel == "linkedin" else deps.email
    sender, is_paced = channel.sender, paced(deps.playbook, channel.live)
    facts = touch_facts(state)
    sent: list[str] = list(state.sent_keys)
    events: list[str] = []

    def stop(status: str, detail: str, event: str) -> dict[str, Any]:
        return {
            "status": status,
            "sent_keys": sent,
            "skip_detail": detail,
            "events": [*events, f"send: {event}"],
        }

    for step in steps_for(draft.step):
        key = idempotency_key(
            state.campaign, state.account.account_id, contact.key, step, state.sequence_position
        )
        existing = deps.outbox.get(key)
        if existing is not None and existing.state == "sent":
            if key not in sent:
                sent.append(key)
            events.append(f"send: {step} already sent ({existing.provider_id})")
            continue
        if existing is not None:
            return _needs_human(deps, existing.key, existing.state, step, stop)
        pacing = deps.playbook.pacing
        gap = (  # drawn once per action, so waiting for it ends the wait
            timedelta(seconds=deps.rng.uniform(pacing.min_gap_seconds, pacing.max_gap_seconds))
            if is_paced
            else None
        )
        while True:
            now = deps.clock()
            if is_paced and (opens := next_opening(pacing, now)) is not None:
                return stop(
                    "deferred",
                    f"outside {sender}'s working hours; waits until {opens:%Y-%m-%d %H:%M} UTC",
                    f"deferred, outside working hours (until {opens:%Y-%m-%d %H:%M} UTC)",
                )
            got = deps.outbox.reserve(
                touch=facts,
                key=key,
                campaign=state.campaign,
                account_id=state.account.account_id,
                contact_key=contact.key,
                step=step,
                channel=draft.channel,
                sender=sender,
                limits=limits_for(deps.playbook, step, now, is_paced=is_paced),
                min_gap=gap,
                cooldown=cooldowns(deps.playbook),
            )
            if got.not_before is None:
                break
            wait = (got.not_before - now).total_seconds()
            if wait > pacing.max_inline_wait_seconds:
                return stop(
                    "deferred",
                    f"{sender} is pacing; next action after {got.not_before:%H:%M:%S} UTC",
                    "deferred, pacing gap",
                )
            events.append(f"send: pacing, waited {wait:.0f}s before {step}")
            await deps.sleep(wait)
        if got.cooldown is not None:
            detail = cooldown_detail(got.cooldown, state.account, contact)
            return {
                "status": "skipped",
                "skip_reason": "cooldown",
                "skip_detail": f"at send time: {detail}",
                "sent_keys": sent,
                "events": [*events, f"send: blocked at send time (cooldown): {detail}"],
            }
        if got.full is not None:
            lim = got.full
            return stop(
                "deferred",
                f"{step} cap reached for {sender}: {got.used}/{lim.limit} {lim.label} since "
                f"{lim.since:%Y-%m-%d %H:%M} UTC; waits until {lim.until:%Y-%m-%d %H:%M} UTC",
                f"deferred, {step} cap {lim.label} {got.used}/{lim.limit}",
            )
        assert got.entry is not None
        if not got.created:  # another process reserved it between our get() and reserve()
            if got.entry.state == "sent":
                sent.append(key)
                continue
            return stop(
                "failed",
                f"{step} was reserved concurrently (state {got.entry.state})",
                f"{step} reserved concurrently, not sending",
            )
        try:
            call = _prepare(deps, state, step, key)
        except Exception as exc:
            why = str(exc) if isinstance(exc, MessageError) else _said(exc)
            deps.outbox.mark_failed(key, f"not sent, refused before the provider call: {why}")
            return stop("failed", f"{step} not sent: {why}", f"{step} not sent: {why}")
        try:
            receipt = await call()
        except ChannelError as exc:
            if exc.maybe_sent:
                deps.outbox.mark_unknown(key, f"the call broke off and may have acted: {exc}")
                return _needs_human(deps, key, "unknown", step, stop)
            if exc.retryable:
                deps.outbox.release(key)
                return stop(
                    "deferred",
                    f"{step}: provider busy, not sent; the next run retries ({exc})",
                    f"deferred, {step} provider busy: {exc}",
                )
            deps.outbox.mark_failed(key, str(exc))
            return stop("failed", f"{step} failed: {exc}", f"{step} failed: {exc}")
        except Exception as exc:
            # The channel broke on something it does not classify: it may have acted already.
            deps.outbox.mark_unknown(key, f"the channel raised {_said(exc)}; it may have acted")
            return _needs_human(deps, key, "unknown", step, stop)
        deps.outbox.mark_sent(key, receipt.provider_id)
        sent.append(key)
        events.append(f"send: {step} sent ({receipt.provider_id})")
    return {"status": "sent", "sent_keys": sent, "events": events}


def _needs_human(
    deps: Deps, key: str, found: str, step: Step, stop: Callable[[str, str, str], dict[str, Any]]
) -> dict[str, Any]:
    """An action found `pending` (its process died mid-call) or `unknown`/`failed`: a person
    checks the provider. It is never retried automatically."""
    if found == "pending":
        found = "unknown"
        deps.outbox.mark_unknown(
            key, "found pending on resume: the provider call may or may not have happened"
        )
    return stop(
        "failed",
        f"{step} is '{found}' in the outbox; check the provider by hand, it will not be retried",
        f"{step} needs a human (outbox state {found})",
    )
