"""The one provider factory: choose and open the CRM, LinkedIn, email and alert backends.

The local twins are the embedded default. A real provider is used only when settings name it,
and a missing credential is a clear error that says which variable to set. Runs open all four
through `open_providers`; `gtm doctor` opens each through the same `open_*` function to check it.
Every backend is closed through `aclose()`.

Dux-Soup and SMTP have no idempotency keys of their own, so their clients keep a key ledger of
what they acted on (`tools.sqlite.KeyStore`). Without GTM_DATABASE_URL it is a file in the data
directory; with it, the database's `acted` table (`tools.pg_keys.PgKeyLedger`), so a worker on
another machine that takes over a killed worker's account sees the keys acted on already.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from pydantic import SecretStr

from gtm.app.settings import Settings
from tools.alerts import AlertQueue, Alerts, LocalAlerts, SlackAlerts
from tools.attio import AttioCRM
from tools.channels import EmailChannel, LinkedInChannel
from tools.crm import CRM
from tools.duxsoup import DuxSoupLinkedIn
from tools.hubspot import HubSpotCRM
from tools.local_crm import LocalCRM
from tools.local_outbox import LocalEmailOutbox, LocalLinkedInOutbox
from tools.smtp import SmtpEmail
from tools.sqlite import KeyStore

if TYPE_CHECKING:
    from tools.pg import Database, PgOnDemand

__all__ = [
    "Providers",
    "ProviderConfigError",
    "Seam",
    "backend",
    "missing_settings",
    "open_alerts",
    "open_crm",
    "open_email",
    "open_linkedin",
    "open_providers",
]

Seam = Literal["crm", "linkedin", "email", "alerts"]
Clock = Callable[[], datetime]


class ProviderConfigError(ValueError):
    """A configured provider lacks a setting; the message names the variable."""


@dataclass
class Providers:
    crm: CRM
    linkedin: LinkedInChannel
    email: EmailChannel
    alerts: Alerts


def _now() -> datetime:
    return datetime.now(UTC)


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


def backend(s: Settings, seam: Seam) -> str:
    """The name of the backend settings choose for a seam, e.g. `hubspot` or `local`."""
    alerts = "slack" if s.slack_webhook_url is not None else "local"
    return {"crm": s.crm, "linkedin": s.linkedin, "email": s.email, "alerts": alerts}[seam]


def missing_settings(s: Settings, seam: Seam | None = None) -> list[str]:
    """Every setting a configured provider (of one seam, or of all) needs but does not have, as
    `GTM_*` names."""
    need: list[tuple[Seam, bool, str]] = [
        ("crm", s.crm == "hubspot" and not s.hubspot_token, "GTM_HUBSPOT_TOKEN"),
        ("crm", s.crm == "attio" and not s.attio_token, "GTM_ATTIO_TOKEN"),
        ("linkedin", s.linkedin == "duxsoup" and not s.duxsoup_user_id, "GTM_DUXSOUP_USER_ID"),
        ("linkedin", s.linkedin == "duxsoup" and not s.duxsoup_key, "GTM_DUXSOUP_KEY"),
        ("email", s.email == "smtp" and not s.smtp_host, "GTM_SMTP_HOST"),
    ]
    return [name for where, missing, name in need if missing and seam in (None, where)]


def _require(s: Settings, seam: Seam | None) -> None:
    missing = missing_settings(s, seam)
    if missing:
        raise ProviderConfigError(
            f"set {', '.join(missing)} (in the environment or ~/.config/gtm/config.toml) "
            "or choose the local backends; `gtm doctor` checks the whole configuration"
        )


def open_crm(s: Settings) -> CRM:
    _require(s, "crm")
    if s.crm == "hubspot":
        return HubSpotCRM.connect(
            s.hubspot_base_url, _secret(s.hubspot_token), timeout=s.http_timeout_s
        )
    if s.crm == "attio":
        return AttioCRM.connect(
            s.attio_base_url,
            _secret(s.attio_token),
            list_id=s.attio_list,
            timeout=s.http_timeout_s,
        )
    return LocalCRM(s.path("crm.sqlite"))


def _key_ledger(s: Settings, file: str, database: Database | None) -> Path | KeyStore:
    """Where a client without idempotency keys records the keys it acted on: the shared
    Postgres pool or URL when GTM_DATABASE_URL is set (every worker sees the same keys; one
    table for both clients, as their keys never collide: each names its step), else a file."""
    if s.database_url is None:
        return s.path(file)
    from tools.pg_keys import PgKeyLedger

    return _on_demand(PgKeyLedger, s, database)


_Shared = TypeVar("_Shared", bound="PgOnDemand")


def _on_demand(kind: type[_Shared], s: Settings, database: Database | None) -> _Shared:
    """A Postgres store of a provider client (`tools.pg.PgOnDemand`) on the workspace's shared
    pool, or, without one, on GTM_DATABASE_URL through a pool of its own opened on first use."""
    assert s.database_url is not None
    return kind(database or s.database_url.get_secret_value(), retry_window=s.database_retry_s)


def open_linkedin(
    s: Settings, *, clock: Clock = _now, database: Database | None = None
) -> LinkedInChannel:
    """`database`: the workspace's shared pool, for the key ledger (else its own, when set)."""
    _require(s, "linkedin")
    if s.linkedin == "duxsoup":
        return DuxSoupLinkedIn.open(
            s.duxsoup_base_url,
            s.duxsoup_user_id or "",
            _secret(s.duxsoup_key),
            ledger=_key_ledger(s, "duxsoup.sqlite", database),
            timeout=s.http_timeout_s,
        )
    return LocalLinkedInOutbox(s.path("linkedin.sqlite"), sender=s.linkedin_seat, clock=clock)


def open_email(
    s: Settings, *, clock: Clock = _now, database: Database | None = None
) -> EmailChannel:
    """`database`: the workspace's shared pool, for the key ledger (else its own, when set)."""
    _require(s, "email")
    if s.email == "smtp":
        return SmtpEmail(
            sender=s.email_from,
            sender_name=s.sender_name,
            host=s.smtp_host or "",
            port=s.smtp_port,
            username=s.smtp_username,
            password=_secret(s.smtp_password) or None,
            starttls=s.smtp_starttls,
            ca_file=s.smtp_ca_file,
            unsubscribe=s.email_unsubscribe,
            timeout=s.http_timeout_s,
            ledger=_key_ledger(s, "smtp.sqlite", database),
            # RFC 8058 one-click unsubscribe, only when both halves are configured.
            one_click_base_url=s.unsubscribe_base_url if s.unsubscribe_secret else None,
            one_click_secret=(_secret(s.unsubscribe_secret) or None)
            if s.unsubscribe_base_url
            else None,
        )
    return LocalEmailOutbox(s.path("email", "outbox"), sender=s.email_from, clock=clock)


def open_alerts(s: Settings, *, clock: Clock = _now, database: Database | None = None) -> Alerts:
    """Slack when a webhook is set, else `alerts.jsonl`. Slack's queue of alerts not yet
    posted is `alerts.sqlite` in the data directory, or, with GTM_DATABASE_URL, the database's
    `alert_queue` (`tools.pg_alerts.PgAlertQueue`) on `database`, the workspace's shared pool
    (else a pool of its own, opened on first use), so every machine retries what one left."""
    if s.slack_webhook_url is not None:
        queue: Path | AlertQueue = s.path("alerts.sqlite")
        if s.database_url is not None:
            from tools.pg_alerts import PgAlertQueue

            queue = _on_demand(PgAlertQueue, s, database)
        return SlackAlerts.open(
            _secret(s.slack_webhook_url), timeout=s.http_timeout_s, queue=queue, clock=clock
        )
    return LocalAlerts(s.path("alerts.jsonl"), clock=clock)


@contextlib.asynccontextmanager
async def open_providers(
    s: Settings, *, clock: Clock = _now, database: Database | None = None
) -> AsyncIterator[Providers]:
    """Open the four backends settings choose (all settings checked first); close them all.
    `database`: the workspace's shared Postgres pool, if it has one (for the key ledgers and
    the Slack alert queue)."""
    _require(s, None)
    async with contextlib.AsyncExitStack() as stack:
        crm = await stack.enter_async_context(contextlib.aclosing(open_crm(s)))
        linkedin = await stack.enter_async_context(
            contextlib.aclosing(open_linkedin(s, clock=clock, database=database))
        )
        email = await stack.enter_async_context(
            contextlib.aclosing(open_email(s, clock=clock, database=database))
        )
        alerts = await stack.enter_async_context(
            contextlib.aclosing(open_alerts(s, clock=clock, database=database))
        )
        yield Providers(crm=crm, linkedin=linkedin, email=email, alerts=alerts)
