"""Reaching a Chroma server (`GTM_CHROMA_URL`): the URL, the token headers, and a bounded
check that it answers and accepts the token, each failure one line that never holds the token.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import httpx

__all__ = [
    "MemoryServerError",
    "auth_headers",
    "check_server",
    "close_http_client",
    "one_line",
    "parse_url",
    "shown_url",
]

CONNECT_TIMEOUT_S = 5.0


class MemoryServerError(RuntimeError):
    """The Chroma server cannot be used: unreachable, refusing the token, or holding a
    collection another embedding made. The message is one line and never holds the token."""


def parse_url(url: str) -> tuple[str, int, bool]:
    """(host, port, ssl) of `http[s]://host[:port]`; anything else is a `MemoryServerError`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MemoryServerError(f"GTM_CHROMA_URL {shown_url(url)} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MemoryServerError(f"GTM_CHROMA_URL {shown_url(url)}: must be http(s)://host[:port]")
    if parts.username or parts.password or parts.path.strip("/") or parts.query:
        raise MemoryServerError(
            f"GTM_CHROMA_URL {shown_url(url)}: only http(s)://host[:port] (a token goes in "
            "GTM_CHROMA_TOKEN)"
        )
    ssl = parts.scheme == "https"
    return parts.hostname, port or (443 if ssl else 8000), ssl


def auth_headers(token: str | None) -> dict[str, str]:
    """Chroma's two token headers: a server or proxy checks one of them."""
    if not token:
        return {}
    return {"X-Chroma-Token": token, "Authorization": f"Bearer {token}"}


def shown_url(url: str) -> str:
    """`url` as printed: scheme, host and port only (no user, password, path or query)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparseable URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def check_server(
    url: str,
    *,
    token: str | None = None,
    tenant: str = "default_tenant",
    database: str = "default_database",
) -> str:
    """Ask the server at `url` for its heartbeat and, with the token, who we are and whether
    the database exists: a bounded wait (`CONNECT_TIMEOUT_S`), where chromadb's own client
    would wait forever on a server that accepts and never answers (and, refused, leaves its
    connections open). Returns the server's version; raises `MemoryServerError` with one line
    (never the token) otherwise."""
    host, port, ssl = parse_url(url)
    base = f"{'https' if ssl else 'http'}://{host}:{port}/api/v2"
    shown = shown_url(url)
    db = f"{base}/tenants/{quote(tenant, safe='')}/databases/{quote(database, safe='')}"
    try:
        with httpx.Client(timeout=CONNECT_TIMEOUT_S, headers=auth_headers(token)) as http:
            got = [http.get(f"{base}/heartbeat")]
            for then in (f"{base}/auth/identity", db, f"{base}/version"):
                if got[-1].status_code != 200:
                    break
                got.append(http.get(then))
    except httpx.HTTPError as exc:
        reason = one_line(exc) if str(exc) else type(exc).__name__
        raise MemoryServerError(
            f"cannot reach the Chroma server at {shown} ({reason}): start it or correct "
            "GTM_CHROMA_URL"
        ) from None
    last = got[-1]
    if last.status_code in (401, 403):
        raise MemoryServerError(
            f"the Chroma server at {shown} refused the token (HTTP {last.status_code}): "
            "check GTM_CHROMA_TOKEN"
        )
    if last.status_code == 404 and len(got) == 3:
        raise MemoryServerError(
            f"the Chroma server at {shown} has no database {database!r} in tenant {tenant!r}: "
            "create it or correct GTM_CHROMA_TENANT / GTM_CHROMA_DATABASE"
        )
    if last.status_code != 200:
        raise MemoryServerError(
            f"{shown} answered {last.request.url.path} with HTTP {last.status_code}: "
            "is GTM_CHROMA_URL a Chroma server?"
        )
    return f"Chroma {last.text.strip().strip(chr(34))[:40]}"


def close_http_client(client: Any) -> None:
    """Release an `HttpClient`: its `close()` stops its System and its admin client's, but
    chromadb 1.5 leaves the connections of their httpx sessions open until garbage collection,
    so those are closed too (private attributes: absent in another version, the garbage
    collector still closes them)."""
    sessions = [
        getattr(getattr(owner, "_server", None), "_session", None)
        for owner in (client, getattr(client, "_admin_client", None))
    ]
    client.close()
    for session in sessions:
        if session is not None:
            session.close()
