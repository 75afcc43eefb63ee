"""The send ledger's rules, once for every backend (`tools.outbox` on SQLite, `tools.pg_outbox`
on Postgres), and the values they answer with.

What stops a reservation, in which order, and what a cooldown is live here in `OutboxStore`; a
backend only gives the queries and its locking, so the two backends cannot come to disagree.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from gtm.domain.models import Channel, OutboxEntry, OutboxState, Step, TouchFacts

__all__ = [
    "CooldownHit",
    "Cooldowns",
    "Limit",
    "OutboxStore",
    "Reservation",
    "SentBrief",
    "iso_week_start",
]

_H = TypeVar("_H")


def iso_week_start(t: datetime) -> datetime:
    """Monday 00:00 UTC of the ISO week containing `t`."""
    t = t.astimezone(UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class Limit:
    """At most `limit` actions of one step by one sender from `since` (a cap window) on."""

    limit: int
    since: datetime
    until: datetime
    label: str


@dataclass(frozen=True)
class Cooldowns:
    """How long a person, and anyone at their account, rests after an action of another
    campaign. A window of zero (or less) does not apply."""

    person: timedelta
    account: timedelta


@dataclass(frozen=True)
class CooldownHit:
    """The latest action of another campaign that keeps a person (`scope` "person") or their
    account ("account") from being contacted now, and the window it falls in."""

    entry: OutboxEntry
    scope: Literal["person", "account"]
    window: timedelta
    age: timedelta


@dataclass(frozen=True)
class Reservation:
    """What `Outbox.reserve` did. `entry` is None when a cooldown, a cap or the pacing gap
    stopped it."""

    entry: OutboxEntry | None
    created: bool
    full: Limit | None = None
    """The cap that is full, if one is."""
    used: int = 0
    not_before: datetime | None = None
    """Pacing: the earliest time this sender may act again."""
    cooldown: CooldownHit | None = None
    """The action of another campaign that puts this person or account in cooldown, if one does."""


class SentBrief(NamedTuple):
    """A sent action as counting needs it (the funnel): no provider id, error or recipient."""

    key: str
    campaign: str
    account_id: str
    contact_key: str
    step: Step
    channel: Channel
    sender: str
    sent_at: datetime
    """When it was marked sent (the row's `updated_at`)."""
    position: int
    tier: int | None
    prompt_version: str | None
    genericness: float | None
    verdict: str | None


class OutboxStore(ABC, Generic[_H]):
    """The ledger's rules (what stops a reservation, in which order; what a cooldown is), once
    for every backend. A backend gives the queries, each through a handle `_H` that `_reading`
    or `_reserving` yields; `_reserving` is the one transaction that holds the locks a
    reservation needs, so nothing it counted changes before it inserts."""

    _clock: Callable[[], datetime]

    @abstractmethod
    def _reading(self) -> AbstractContextManager[_H]:
        """A handle for reads outside a reservation."""

    @abstractmethod
    def _reserving(
        self, key: str, sender: str, contact_key: str, account_id: str
    ) -> AbstractContextManager[_H]:
        """One transaction that no reservation of this key, sender, person or account can
        overlap: committed when the block ends, rolled back when it raises."""

    @abstractmethod
    def _get(self, h: _H, key: str) -> OutboxEntry | None: ...

    @abstractmethod
    def _count(self, h: _H, sender: str, step: Step, since: datetime) -> int:
        """Actions of `sender` and `step` but `failed` ones, created at `since` or later."""

    @abstractmethod
    def _last_action(self, h: _H, sender: str) -> datetime | None:
        """When `sender` last reserved an action that did not fail."""

    @abstractmethod
    def _latest_near(
        self, h: _H, campaign: str, near: list[tuple[str, str, datetime]]
    ) -> OutboxEntry | None:
        """The latest action not of `campaign` and not `failed` whose (column, value) is one
        of `near`, created after that entry's time."""

    @abstractmethod
    def _insert(
        self, h: _H, now: datetime, fields: tuple[str, ...], facts: dict[str, Any]
    ) -> OutboxEntry:
        """Insert the `pending` row (key, campaign, account_id, contact_key, step, channel,
        sender) created `now`, with its touch `facts`; the row as stored."""

    @abstractmethod
    def _mark(
        self, key: str, state: OutboxState, provider_id: str | None, error: str | None
    ) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def release(self, key: str) -> None: ...

    @abstractmethod
    def entries(
        self,
        campaign: str | None = None,
        state: OutboxState | None = None,
        *,
        account_id: str | None = None,
        contact_key: str | None = None,
    ) -> list[OutboxEntry]:
        """The entries matching every filter given, oldest first. Per-account and per-person
        questions pass `account_id` or `contact_key` (both indexed), so their cost does not grow
        with the campaign: a whole campaign's outbox read per account made each account of a
        10,000-action campaign cost 135 ms on SQLite."""

    @abstractmethod
    def sent_briefs(self) -> list[SentBrief]: ...

    @abstractmethod
    def erase_contact(self, contact_key: str, replacement: str) -> int: ...

    @abstractmethod
    def recover_stale_pending(self, older_than: datetime) -> list[OutboxEntry]: ...

    def reserve(
        self,
        *,
        key: str,
        campaign: str,
        account_id: str,
        contact_key: str,
        step: Step,
        channel: Channel,
        sender: str,
        limits: Sequence[Limit] = (),
        min_gap: timedelta | None = None,
        cooldown: Cooldowns | None = None,
        touch: TouchFacts | None = None,
    ) -> Reservation:
        """Record a `pending` action under `key`, if no entry has it, the person and account are
        out of `cooldown`, and the caps allow it.

        Deciding and inserting happen in one transaction that holds the backend's locks
        (`_reserving`), so two processes cannot both take the last slot under a cap, nor both
        contact one person from two campaigns. `min_gap` is the least time since this sender's
        previous action (pacing for live providers). `touch` is kept with the row: whom it went
        to and how it was judged.
        """
        now = self._clock()
        with self._reserving(key, sender, contact_key, account_id) as h:
            existing = self._get(h, key)
            if existing is not None:
                return Reservation(existing, created=False)
            if cooldown is not None:
                hit = self._cooldown(h, campaign, contact_key, account_id, cooldown, now)
                if hit is not None:
                    return Reservation(None, created=False, cooldown=hit)
            for lim in limits:
                used = self._count(h, sender, step, lim.since)
                if used >= lim.limit:
                    return Reservation(None, created=False, full=lim, used=used)
            if min_gap is not None and min_gap > timedelta(0):
                last = self._last_action(h, sender)
                if last is not None and last + min_gap > now:
                    return Reservation(None, created=False, not_before=last + min_gap)
            fields = (key, campaign, account_id, contact_key, step, channel, sender)
            entry = self._insert(h, now, fields, (touch or TouchFacts()).model_dump())
        return Reservation(entry, created=True)

    def mark_sent(self, key: str, provider_id: str) -> None:
        self._mark(key, "sent", provider_id, None)

    def mark_failed(self, key: str, error: str) -> None:
        self._mark(key, "failed", None, error)

    def mark_unknown(self, key: str, error: str) -> None:
        self._mark(key, "unknown", None, error)

    def get(self, key: str) -> OutboxEntry | None:
        with self._reading() as h:
            return self._get(h, key)

    def count(self, sender: str, step: Step, since: datetime) -> int:
        """Actions that count against a cap: everything but `failed`, from `since` on."""
        with self._reading() as h:
            return self._count(h, sender, step, since)

    def cooldown_hit(
        self,
        *,
        campaign: str,
        contact_key: str,
        account_id: str,
        cooldown: Cooldowns,
        now: datetime | None = None,
    ) -> CooldownHit | None:
        """The latest action of another campaign that puts this person or account in cooldown.

        Every state but `failed` counts: a `pending` or `unknown` action may be mid-call or may
        have reached the person. The campaign's own actions are exempt (a visit before a connect).
        `reserve` asks this under its locks; read alone (at intake) it is only a forecast.
        """
        with self._reading() as h:
            return self._cooldown(
                h, campaign, contact_key, account_id, cooldown, now or self._clock()
            )

    def _cooldown(
        self,
        h: _H,
        campaign: str,
        contact_key: str,
        account_id: str,
        cooldown: Cooldowns,
        now: datetime,
    ) -> CooldownHit | None:
        now = now.astimezone(UTC)
        near = [
            (column, value, now - window)
            for column, value, window in (
                ("contact_key", contact_key, cooldown.person),
                ("account_id", account_id, cooldown.account),
            )
            if window > timedelta(0)
        ]
        if not near:
            return None
        entry = self._latest_near(h, campaign, near)
        if entry is None:
            return None
        age = now - entry.created_at
        if entry.contact_key == contact_key and age < cooldown.person:
            return CooldownHit(entry, "person", cooldown.person, age)
        return CooldownHit(entry, "account", cooldown.account, age)
