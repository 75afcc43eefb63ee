"""`gtm doctor`: check the configuration and reach every configured provider, sending nothing.

Each check reads only: HubSpot's token info and one company page, Attio's `/v2/self`, Dux-Soup's
queue size, an SMTP session up to NOOP, and a Slack webhook with an empty payload (refused
without posting).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gtm.app.providers import missing_settings
from gtm.app.settings import Settings, default_config_path
from tools.alerts import SlackAlerts
from tools.attio import AttioCRM
from tools.channels import ChannelError
from tools.duxsoup import DuxSoupLinkedIn
from tools.http import AuthError, NotFoundError, ProviderError
from tools.hubspot import HubSpotCRM
from tools.smtp import SmtpEmail

__all__ = ["Finding", "diagnose"]


@dataclass(frozen=True)
class Finding:
    component: str
    ok: bool
    detail: str
    fix: str = ""


def _secret(v: object) -> str:
    return v.get_secret_value() if hasattr(v, "get_secret_value") else ""


async def _probe(
    component: str, run: Callable[[], Awaitable[str]], fix_auth: str, fix_other: str
) -> Finding:
    try:
        return Finding(component, True, await run())
    except AuthError as exc:
        return Finding(component, False, str(exc), fix_auth)
    except NotFoundError as exc:
        return Finding(component, False, str(exc), fix_other)
    except (ProviderError, ChannelError) as exc:
        return Finding(component, False, str(exc), fix_other)


async def diagnose(s: Settings) -> list[Finding]:
    out: list[Finding] = []
    cfg = default_config_path()
    out.append(
        Finding(
            "config",
            True,
            f"{cfg} {'found' if cfg.exists() else 'not present (environment only)'}; "
            f"data dir {s.data_dir.resolve()}",
        )
    )
    try:
        s.data_dir.mkdir(parents=True, exist_ok=True)
        writable = os.access(s.data_dir, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        out.append(Finding("data dir", False, f"{s.data_dir} is not writable", "set GTM_DATA_DIR"))
    out.append(
        Finding(
            "model",
            True,
            f"endpoint {s.model_base_url} ({s.model or 'default model'})"
            if s.model_base_url
            else "embedded SmolLM2 via llama.cpp (set GTM_MODEL_BASE_URL for a real model)",
        )
    )
    missing = missing_settings(s)
    for name in missing:
        out.append(Finding("settings", False, f"{name} is not set", f"export {name}=..."))
    t = s.http_timeout_s

    if s.crm == "hubspot" and s.hubspot_token:
        token = _secret(s.hubspot_token)
        hub = HubSpotCRM.connect(s.hubspot_base_url, token, timeout=t)
        try:
            out.append(
                await _probe(
                    "crm: hubspot",
                    lambda: hub.check(token),
                    "create a private app with the CRM scopes in README and set GTM_HUBSPOT_TOKEN",
                    f"check GTM_HUBSPOT_BASE_URL ({s.hubspot_base_url})",
                )
            )
        finally:
            await hub.aclose()
    elif s.crm == "attio" and s.attio_token:
        attio = AttioCRM.connect(
            s.attio_base_url, _secret(s.attio_token), list_id=s.attio_list, timeout=t
        )
        try:
            out.append(
                await _probe(
                    "crm: attio",
                    attio.check,
                    "create an Attio access token with the scopes in README; set GTM_ATTIO_TOKEN",
                    f"check GTM_ATTIO_LIST ({s.attio_list}) and GTM_ATTIO_BASE_URL",
                )
            )
        finally:
            await attio.aclose()
    elif s.crm == "local":
        out.append(Finding("crm: local", True, f"SQLite CRM in {s.data_dir}"))

    if s.linkedin == "duxsoup" and s.duxsoup_user_id and s.duxsoup_key:
        dux = DuxSoupLinkedIn.open(
            s.duxsoup_base_url,
            s.duxsoup_user_id,
            _secret(s.duxsoup_key),
            ledger=s.path("duxsoup.sqlite"),
            timeout=t,
        )
        try:
            out.append(
                await _probe(
                    "linkedin: duxsoup",
                    dux.check,
                    "copy the user id and remote-control key from Dux-Soup's options (Connect tab)",
                    f"check GTM_DUXSOUP_BASE_URL ({s.duxsoup_base_url})",
                )
            )
        finally:
            await dux.aclose()
            dux.close()
    elif s.linkedin == "local":
        out.append(Finding("linkedin: local", True, f"action log in {s.data_dir}"))

    if s.email == "smtp" and s.smtp_host:
        smtp = SmtpEmail(
            sender=s.email_from,
            sender_name=s.sender_name,
            host=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=_secret(s.smtp_password) or None,
            starttls=s.smtp_starttls,
            ca_file=s.smtp_ca_file,
            timeout=t,
        )

        async def smtp_check() -> str:
            return await asyncio.to_thread(smtp.check)

        out.append(
            await _probe(
                "email: smtp",
                smtp_check,
                "check GTM_SMTP_USERNAME / GTM_SMTP_PASSWORD",
                "check GTM_SMTP_HOST, GTM_SMTP_PORT, GTM_SMTP_STARTTLS and GTM_SMTP_CA_FILE",
            )
        )
    elif s.email == "local":
        out.append(Finding("email: local", True, f".eml outbox in {s.data_dir}"))

    if s.slack_webhook_url is not None:
        slack = SlackAlerts.open(_secret(s.slack_webhook_url), timeout=t)
        try:
            out.append(
                await _probe(
                    "alerts: slack",
                    slack.check,
                    "the webhook was revoked: create a new incoming webhook",
                    "check GTM_SLACK_WEBHOOK_URL (Slack answers no_service for unknown URLs)",
                )
            )
        finally:
            await slack.aclose()
    else:
        out.append(Finding("alerts: local", True, f"alerts.jsonl in {s.data_dir}"))
    return out
