"""One-click unsubscribe links (RFC 8058): a URL that names the sent email and proves we made it.

The link is `<base URL>/unsubscribe/<token>`, where the token is the outbox key of the email it
was sent in, a dot, and an HMAC-SHA256 of that key under a secret only this installation knows
(`GTM_UNSUBSCRIBE_SECRET`), cut to 128 bits. The outbox key is a hash (no name, no address), so
the URL carries no personal data; without the secret nobody can make a token for another email,
and checking it needs no table of issued links. The SMTP client puts the URL in
`List-Unsubscribe` with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`; the web receiver
(`gtm.web.webhooks.unsubscribe_route`) checks the token in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re

__all__ = ["ONE_CLICK_BODY", "check_unsubscribe_secret", "key_of", "one_click_url", "token"]

ONE_CLICK_BODY = "List-Unsubscribe=One-Click"
"""What RFC 8058 says the POST carries, and the value of `List-Unsubscribe-Post`."""

_KEY = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SECRET = re.compile(r"[\x21-\x7e]{32,256}")
_DOMAIN = b"gtm-one-click-unsubscribe\x00"


def check_unsubscribe_secret(secret: str) -> str:
    """`secret` if it is long enough to sign links (32+ printable ASCII); else ValueError."""
    if not _SECRET.fullmatch(secret):
        raise ValueError(
            "GTM_UNSUBSCRIBE_SECRET must be 32 to 256 printable ASCII characters "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return secret


def _sig(key: str, secret: str) -> str:
    mac = hmac.new(secret.encode(), _DOMAIN + key.encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def token(key: str, secret: str) -> str:
    """The token for the email sent under outbox `key`."""
    if not _KEY.fullmatch(key):
        raise ValueError("an outbox key for a link is 1-128 characters of A-Z a-z 0-9 _ -")
    return f"{key}.{_sig(key, check_unsubscribe_secret(secret))}"


def key_of(value: str, secret: str) -> str | None:
    """The outbox key a token names, or None when it is not one we signed."""
    key, dot, sig = value.rpartition(".")
    if not dot or not _KEY.fullmatch(key) or len(sig) != 32:
        return None
    good = _sig(key, check_unsubscribe_secret(secret))
    return key if hmac.compare_digest(sig.encode(), good.encode()) else None


def one_click_url(base_url: str, key: str, secret: str) -> str:
    """`<base_url>/unsubscribe/<token>`; the base must be https (RFC 8058 section 3.1)."""
    if not base_url.startswith("https://"):
        raise ValueError("a one-click unsubscribe URL must be https")
    return f"{base_url.rstrip('/')}/unsubscribe/{token(key, secret)}"
