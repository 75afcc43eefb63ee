"""Choose and open the CRM, LinkedIn, email and alert backends from settings.

The local twins are the embedded default. A real provider is used only when settings name it,
and a missing credential is a clear error that says which variable to set.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gtm.app.settings import Settings
from tools.alerts import Alerts, LocalAlerts, SlackAlerts
from tools.attio import AttioCRM
from tools.channels import EmailChannel, LinkedInChannel
from tools.crm import CRM
from tools.duxsoup import DuxSoupLinkedIn
from tools.hubspot import HubSpotCRM
from tools.local_crm import LocalCRM
from tools.local_outbox import LocalEmailOutbox, LocalLinkedInOutbox
from tools.smtp import SmtpEmail

__all__ = ["Providers", "ProviderConfigError", "open_providers", "missing_settings"]


class ProviderConfigError(ValueError):
    """A configured provider lacks a setting; the message names the variable."""


@dataclass
class Providers:
    crm: CRM
    linkedin: LinkedInChannel
    email: EmailChannel
    alerts: Alerts
    names: dict[str, str] = field(default_factory=dict)


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def missing_settings(s: Settings) -> list[str]:
    """Every setting a configured provider needs but does not have, as `GTM_*` names."""
    need: list[tuple[bool, str]] = [
        (s.crm == "hubspot" and not s.hubspot_token, "GTM_HUBSPOT_TOKEN"),
        (s.crm == "attio" and not s.attio_token, "GTM_ATTIO_TOKEN"),
        (s.linkedin == "duxsoup" and not s.duxsoup_user_id, "GTM_DUXSOUP_USER_ID"),
        (s.linkedin == "duxsoup" and not s.duxsoup_key, "GTM_DUXSOUP_KEY"),
        (s.email == "smtp" and not s.smtp_host, "GTM_SMTP_HOST"),
    ]
    return [name for missing, name in need if missing]


@contextlib.asynccontextmanager
async def open_providers(s: Settings) -> AsyncIterator[Providers]:
    missing = missing_settings(s)
    if missing:
        raise ProviderConfigError(
            f"set {', '.join(missing)} (in the environment or {'~/.config/gtm/config.toml'}) "
            "or choose the local backends; `gtm doctor` checks the whole configuration"
        )
    async with contextlib.AsyncExitStack() as stack:
        crm: Any
        if s.crm == "hubspot":
            crm = HubSpotCRM.connect(
                s.hubspot_base_url, _secret(s.hubspot_token) or "", timeout=s.http_timeout_s
            )
            stack.push_async_callback(crm.aclose)
        elif s.crm == "attio":
            crm = AttioCRM.connect(
                s.attio_base_url,
                _secret(s.attio_token) or "",
                list_id=s.attio_list,
                timeout=s.http_timeout_s,
            )
            stack.push_async_callback(crm.aclose)
        else:
            crm = LocalCRM(s.path("crm.sqlite"))
            stack.callback(crm.close)
        linkedin: Any
        if s.linkedin == "duxsoup":
            linkedin = DuxSoupLinkedIn.open(
                s.duxsoup_base_url,
                s.duxsoup_user_id or "",
                _secret(s.duxsoup_key) or "",
                ledger=s.path("duxsoup.sqlite"),
                timeout=s.http_timeout_s,
            )
            stack.push_async_callback(linkedin.aclose)
        else:
            linkedin = LocalLinkedInOutbox(s.path("linkedin.sqlite"), sender=s.linkedin_seat)
        stack.callback(linkedin.close)
        email: Any
        if s.email == "smtp":
            email = SmtpEmail(
                sender=s.email_from,
                sender_name=s.sender_name,
                host=s.smtp_host or "",
                port=s.smtp_port,
                username=s.smtp_username,
                password=_secret(s.smtp_password),
                starttls=s.smtp_starttls,
                ca_file=s.smtp_ca_file,
                unsubscribe=s.email_unsubscribe,
                timeout=s.http_timeout_s,
                ledger=s.path("smtp.sqlite"),
            )
        else:
            email = LocalEmailOutbox(s.path("email", "outbox"), sender=s.email_from)
        stack.callback(email.close)
        alerts: Any
        if s.slack_webhook_url is not None:
            alerts = SlackAlerts.open(_secret(s.slack_webhook_url) or "")
            stack.push_async_callback(alerts.aclose)
        else:
            alerts = LocalAlerts(s.path("alerts.jsonl"))
        yield Providers(
            crm=crm,
            linkedin=linkedin,
            email=email,
            alerts=alerts,
            names={
                "crm": s.crm,
                "linkedin": s.linkedin,
                "email": s.email,
                "alerts": "slack" if s.slack_webhook_url else "local",
            },
        )
