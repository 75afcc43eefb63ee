"""How a person is recognised across lists, suppression, erasure and the outbox.

A LinkedIn profile arrives in many spellings: with or without a scheme, `www.`, a country
subdomain (`de.linkedin.com`), the mobile host, a trailing slash, a query string, mixed case.
Every place a profile URL enters the product reduces it with `profile_url`, so a person who
opted out under one spelling is recognised under every other.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["profile_url", "PROFILE_URL_EXAMPLE", "PERSONAL_MAIL", "at_company"]

PERSONAL_MAIL = frozenset(
    "gmail.com googlemail.com yahoo.com ymail.com hotmail.com outlook.com live.com msn.com "
    "icloud.com me.com mac.com aol.com proton.me protonmail.com gmx.com gmx.de gmx.net web.de "
    "mail.ru yandex.ru qq.com 163.com 126.com zoho.com hey.com fastmail.com".split()
)
"""Mail providers whose domain says nothing about the person's company."""

PROFILE_URL_EXAMPLE = "https://www.linkedin.com/in/name"
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_SUBDOMAIN = re.compile(r"(?:www|m|mobile|[a-z]{2}|[a-z]{2}-[a-z]{2})")
_PATH = re.compile(r"/in/([^/\s?#]+)/?", re.IGNORECASE)


def profile_url(value: str) -> str | None:
    """`https://www.linkedin.com/in/<slug>` with the slug lower-cased, or None when `value` is
    not a LinkedIn member profile URL (a company page, a post, another site, junk)."""
    v = value.strip()
    if not v or any(c.isspace() for c in v):
        return None
    if not _SCHEME.match(v):
        v = "https://" + v
    try:
        parts = urlsplit(v)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:  # an unclosed IPv6 bracket, a port that is not a number
        return None
    if parts.scheme.lower() not in ("http", "https") or port is not None:
        return None
    if host != "linkedin.com":
        sub, dot, rest = host.partition(".")
        if not dot or rest != "linkedin.com" or not _SUBDOMAIN.fullmatch(sub):
            return None
    m = _PATH.fullmatch(parts.path)
    if m is None:
        return None
    return f"https://www.linkedin.com/in/{m.group(1).lower()}"


def at_company(email: str | None, domain: str) -> bool:
    """`email` is an address at the company of `domain` (or a subdomain of it): someone who
    works there. Never for a personal mail provider's domain, where the address says nothing
    about the company, nor for an empty or malformed address or domain."""
    d = domain.strip().lower().removeprefix("www.").rstrip(".")
    if not email or "@" not in email or not d or "." not in d or d in PERSONAL_MAIL:
        return False
    host = email.strip().lower().rsplit("@", 1)[1].rstrip(".")
    if host in PERSONAL_MAIL:
        return False
    return host == d or host.endswith("." + d)
