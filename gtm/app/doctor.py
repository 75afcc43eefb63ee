"""`gtm doctor`: check the configuration and reach every configured provider, sending nothing.

Each provider is opened by the same factory runs use and asked for its `check()`, which only
reads: HubSpot's token info and one company page, Attio's `/v2/self`, Dux-Soup's queue size, an
SMTP session up to NOOP, a Slack webhook with an empty payload (refused without posting), and
for a local backend where it keeps its data. A configured model endpoint is asked for its model
list (`GET {base_url}/models`, a few seconds at most): a closed port, a refused key or a URL
that is no OpenAI-compatible API root is a failure, never "ok". The key is sent, never shown.
A configured IMAP mailbox (GTM_IMAP_HOST) is logged in to and its folder opened, nothing read.
Website research is reported on or off (GTM_WEB_CONTACT); no site is fetched. A Chroma server
(GTM_CHROMA_URL) is asked for its heartbeat, version and memory collection, creating nothing.
A Postgres database (GTM_DATABASE_URL) is compared with this version's migrations, changing
nothing (`gtm db status`); its password is never shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from gtm.app.providers import (
    Seam,
    backend,
    missing_settings,
    open_alerts,
    open_crm,
    open_email,
    open_linkedin,
)
from gtm.app.settings import Settings, default_config_path
from memory.chroma_http import MemoryServerError
from tools.channels import ChannelError
from tools.http import AuthError, HttpClient, NotFoundError, ProviderError
from tools.imap import ImapMailbox, MailboxError
from tools.provider import Provider
from tools.web import WebSettings

__all__ = ["Finding", "diagnose"]

MODEL_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Finding:
    component: str
    ok: bool
    detail: str
    fix: str = ""


_OPENERS: list[tuple[Seam, Callable[[Settings], Provider]]] = [
    ("crm", open_crm),
    ("linkedin", open_linkedin),
    ("email", open_email),
    ("alerts", open_alerts),
]


def _fixes(s: Settings, component: str) -> tuple[str, str]:
    """What to do when a component fails: on an auth error, and on any other error."""
    fixes = {
        "crm: hubspot": (
            "create a private app with the CRM scopes in README and set GTM_HUBSPOT_TOKEN",
            f"check GTM_HUBSPOT_BASE_URL ({s.hubspot_base_url})",
        ),
        "crm: attio": (
            "create an Attio access token with the scopes in README; set GTM_ATTIO_TOKEN",
            f"check GTM_ATTIO_LIST ({s.attio_list}) and GTM_ATTIO_BASE_URL",
        ),
        "linkedin: duxsoup": (
            "copy the user id and remote-control key from Dux-Soup's options (Connect tab)",
            f"check GTM_DUXSOUP_BASE_URL ({s.duxsoup_base_url})",
        ),
        "email: smtp": (
            "check GTM_SMTP_USERNAME / GTM_SMTP_PASSWORD",
            "check GTM_SMTP_HOST, GTM_SMTP_PORT, GTM_SMTP_STARTTLS and GTM_SMTP_CA_FILE",
        ),
        "alerts: slack": (
            "the webhook was revoked: create a new incoming webhook",
            "check GTM_SLACK_WEBHOOK_URL (Slack answers no_service for unknown URLs)",
        ),
    }
    return fixes.get(component, ("set GTM_DATA_DIR", "set GTM_DATA_DIR"))


async def _check(s: Settings, seam: Seam, opener: Callable[[Settings], Provider]) -> Finding:
    """Open one seam's backend as a run would, ask for its `check()`, and close it."""
    component = f"{seam}: {backend(s, seam)}"
    fix_auth, fix_other = _fixes(s, component)
    try:
        async with contextlib.aclosing(opener(s)) as provider:
            return Finding(component, True, await provider.check())
    except AuthError as exc:
        return Finding(component, False, str(exc), fix_auth)
    except (ProviderError, ChannelError, OSError, sqlite3.Error) as exc:
        return Finding(component, False, str(exc), fix_other)


def _shown(url: str) -> str:
    """The endpoint as doctor prints it: no user, password or query (where keys can hide)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


async def _model(s: Settings) -> Finding:
    """Reach the configured endpoint as a run would, asking only for its model list."""
    if not s.model_base_url:
        return Finding(
            "model",
            True,
            "embedded SmolLM2 via llama.cpp (set GTM_MODEL_BASE_URL for a real model)",
        )
    ms = s.model_settings()
    key = ms.api_key.get_secret_value() if ms.api_key else ""
    parts = urlsplit(s.model_base_url)
    listing = urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/models"))
    shown = _shown(s.model_base_url)
    client = HttpClient(
        "model",
        listing,
        headers={"Authorization": f"Bearer {key}"} if key else {},
        secrets=[key, parts.password or "", parts.query],
        timeout=MODEL_TIMEOUT_S,
        attempts=1,
    )
    try:
        async with contextlib.aclosing(client):
            body = (await client.request("GET", listing, idempotent=True)).json()
    except AuthError as exc:
        fix = "check GTM_MODEL_API_KEY (or OPENAI_API_KEY): the endpoint refused it"
        return Finding("model", False, str(exc), fix)
    except NotFoundError as exc:
        fix = "GTM_MODEL_BASE_URL must be the API root, e.g. https://api.openai.com/v1"
        return Finding("model", False, str(exc), fix)
    except ProviderError as exc:
        fix = (
            "the endpoint answers but fails: check its status or log, then run doctor again"
            if exc.status
            else "start the model server or correct GTM_MODEL_BASE_URL; "
            "unset it to use the embedded model"
        )
        return Finding("model", False, str(exc), fix)
    except ValueError:
        fix = "GTM_MODEL_BASE_URL must be an OpenAI-compatible API root, e.g. .../v1"
        return Finding("model", False, f"{shown}/models did not answer JSON", fix)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        fix = "GTM_MODEL_BASE_URL must be an OpenAI-compatible API root, e.g. .../v1"
        return Finding("model", False, f"{shown}/models is not an OpenAI model list", fix)
    ids = [str(m.get("id")) for m in data if isinstance(m, dict)]
    name = s.model or "default model"
    listed = (
        "" if not s.model or s.model in ids else f"; {s.model} is not among its {len(ids)} models"
    )
    return Finding("model", True, f"endpoint {shown} ({name}) answers{listed}")


async def _mailbox(s: Settings) -> Finding:
    """Log in to the configured IMAP mailbox and open its folder, reading no message."""
    name = f"mailbox: {s.imap_host}:{s.imap_port}"
    if not s.imap_username or not s.imap_password:
        return Finding(
            name, False, "no username or password", "set GTM_IMAP_USERNAME and _PASSWORD"
        )
    mailbox = ImapMailbox(
        host=s.imap_host or "",
        port=s.imap_port,
        username=s.imap_username,
        password=s.imap_password.get_secret_value(),
        folder=s.imap_folder,
        ssl=s.imap_ssl,
        starttls=s.imap_starttls,
        ca_file=s.imap_ca_file,
        timeout=min(s.http_timeout_s, 10.0),
    )
    try:
        return Finding(name, True, await asyncio.to_thread(mailbox.check))
    except MailboxError as exc:
        fix = {
            "login": "check GTM_IMAP_USERNAME and GTM_IMAP_PASSWORD (or use an app password)",
            "folder": f"check GTM_IMAP_FOLDER ({s.imap_folder})",
        }.get(
            exc.reason,
            "check GTM_IMAP_HOST, GTM_IMAP_PORT, GTM_IMAP_SSL / _STARTTLS and GTM_IMAP_CA_FILE",
        )
        return Finding(name, False, str(exc), fix)


def _webhook(s: Settings) -> Finding:
    """What the Dux-Soup receiver takes as events: the unconfirmed built-in pairs and the ones
    `GTM_DUXSOUP_WEBHOOK_KINDS` maps (already checked when the settings were loaded)."""
    extra = ", ".join(f"{k} -> {v}" for k, v in sorted(s.duxsoup_webhook_kinds.items()))
    mapped = f"GTM_DUXSOUP_WEBHOOK_KINDS: {extra}" if extra else "built-in type.stage pairs only"
    return Finding(
        "dux-soup webhook",
        True,
        f"served by `gtm serve`; {mapped}; profile visits (visit.create, visit.update) are "
        "kept as profile facts; a post of any other pair is answered 202 with the pair named, "
        "logged once, and not recorded",
        ""
        if extra
        else "the built-in pairs are unconfirmed: press Send Sample in Dux-Soup and "
        "map what arrives in GTM_DUXSOUP_WEBHOOK_KINDS (README)",
    )


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
    out.append(await _model(s))
    missing = missing_settings(s)
    for name in missing:
        out.append(Finding("settings", False, f"{name} is not set", f"export {name}=..."))
    for seam, opener in _OPENERS:
        if not missing_settings(s, seam):  # else reported above: nothing to reach without it
            out.append(await _check(s, seam, opener))
    if s.imap_host:
        out.append(await _mailbox(s))
    if s.duxsoup_webhook_secret is not None:
        out.append(_webhook(s))
    out.append(_web(s))
    if s.chroma_url:
        out.append(await _chroma(s))
    if s.database_url is not None:
        out.append(await _database(s))
    return out


async def _database(s: Settings) -> Finding:
    """Where the Postgres database stands against this version's migrations, as `gtm db
    status` says it: a database that cannot be reached, or is behind, is a failure."""
    from gtm.app.stores import where_stores_live
    from tools.pg import DatabaseError  # psycopg and alembic load only when a URL is set
    from tools.pg_migrate import status

    assert s.database_url is not None
    try:
        got = await asyncio.to_thread(status, s.database_url.get_secret_value())
    except DatabaseError as exc:
        return Finding("database: postgres", False, str(exc), "correct GTM_DATABASE_URL")
    where = (
        f"{got.where}: stores at revision {got.current or 'none'} (head {got.head}), "
        f"checkpoints {got.checkpoints} of {got.checkpoints_head} migrations"
    )
    if not got.up_to_date:
        return Finding("database: postgres", False, f"{where}; behind", "run `gtm db upgrade`")
    return Finding(
        "database: postgres",
        True,
        f"{where}; up to date. {where_stores_live(s)}",
    )


async def _chroma(s: Settings) -> Finding:
    """Reach the memory's Chroma server as a run would; the token is sent, never shown."""
    from memory.chroma import describe_server  # chromadb loads only when a server is set

    assert s.chroma_url is not None
    token = s.chroma_token.get_secret_value() if s.chroma_token else None
    try:
        detail = await asyncio.to_thread(
            describe_server,
            s.chroma_url.get_secret_value(),
            token=token,
            tenant=s.chroma_tenant,
            database=s.chroma_database,
        )
    except MemoryServerError as exc:
        fix = "start the server (chroma run --path DIR) or correct GTM_CHROMA_URL / _TOKEN"
        return Finding("memory: chroma server", False, str(exc), fix)
    return Finding("memory: chroma server", True, detail)


def _web(s: Settings) -> Finding:
    """Whether research reads company websites (opt-in: it reaches the internet)."""
    if not s.web_contact:
        return Finding(
            "web research",
            True,
            "off: research uses the list, the CRM and memory only",
            "set GTM_WEB_CONTACT to a URL or email address site owners can reach you at to "
            "read each account's website",
        )
    agent = WebSettings(contact=s.web_contact).user_agent
    return Finding(
        "web research", True, f"on: user agent {agent!r}, cache {(s.data_dir / 'web').resolve()}"
    )
