"""The one HTTP layer every provider client uses.

- A timeout on every request.
- A client-side rate limiter per provider (`aiolimiter`, a leaky bucket): the provider's
  documented limit, so we slow down before it has to refuse us.
- Retries with exponential backoff and jitter (`tenacity`) on 429, 5xx and transport errors,
  honouring `Retry-After`. A 429 means the request was not processed, so it is retried for any
  call. A 5xx or a dropped connection on a call that is not idempotent (a create, a queued
  LinkedIn action) is **not** retried: the provider may have acted, and a blind retry could
  act twice. The caller gets `UnavailableError(maybe_applied=True)` and decides.
- Errors map to a small hierarchy, all under `ProviderError`: `AuthError` (and its `ScopeError`,
  raised by a client's own check), `NotFoundError`, `RateLimitedError`, `ValidationError`,
  `UnavailableError`, and `PagingError` for a listing that does not end.
- `collect_pages` reads a paged listing to its end, with a bound: a provider that keeps
  answering "there is more" (or repeats a cursor) fails the read instead of looping forever, and
  a listing cut short is never taken for the whole (a missed open deal or an unseen note of ours
  would let the pipeline act on a wrong picture).
- Secrets never reach logs or errors: headers are never logged, and messages are scrubbed of
  the secrets the client was given.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

__all__ = [
    "ProviderError",
    "AuthError",
    "ScopeError",
    "NotFoundError",
    "RateLimitedError",
    "ValidationError",
    "UnavailableError",
    "PagingError",
    "HttpClient",
    "collect_pages",
]

log = logging.getLogger("gtm.http")


class ProviderError(RuntimeError):
    """A provider call failed. `status` is the HTTP status (None for transport errors)."""

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status = status


class AuthError(ProviderError):
    """401/403: the credentials are wrong, expired, or lack a scope."""


class ScopeError(AuthError):
    """The credentials work but lack a scope the client needs (found by the client's check)."""


class NotFoundError(ProviderError):
    """404: the record or endpoint does not exist."""


class ValidationError(ProviderError):
    """400/409/422: the provider rejected the request's content; retrying will not help."""


class RateLimitedError(ProviderError):
    """429 after every retry: the provider is still throttling us."""

    def __init__(self, provider: str, message: str, *, retry_after: float | None) -> None:
        super().__init__(provider, message, status=429)
        self.retry_after = retry_after


class UnavailableError(ProviderError):
    """5xx or a transport failure. `maybe_applied`: the provider may have acted anyway."""

    def __init__(
        self, provider: str, message: str, *, status: int | None, maybe_applied: bool
    ) -> None:
        super().__init__(provider, message, status=status)
        self.maybe_applied = maybe_applied


class PagingError(ProviderError):
    """A listing did not end within its bound, or the provider repeated a cursor. What was read
    is not the whole listing, so nothing may be decided from it."""


_T = TypeVar("_T")
_C = TypeVar("_C", bound=Hashable)


async def collect_pages(
    provider: str,
    what: str,
    fetch: Callable[[_C | None], Awaitable[tuple[list[_T], _C | None]]],
    *,
    max_pages: int,
) -> list[_T]:
    """Every item of a paged listing. `fetch(cursor)` returns one page and the next cursor (None
    on the last page; the first call gets None). Raises `PagingError` when the listing has not
    ended after `max_pages` pages or a cursor comes back a second time."""
    items: list[_T] = []
    seen: set[_C] = set()
    cursor: _C | None = None
    for _ in range(max_pages):
        page, cursor = await fetch(cursor)
        items += page
        if cursor is None:
            return items
        if cursor in seen:
            raise PagingError(provider, f"{what}: the provider sent the same page cursor twice")
        seen.add(cursor)
    raise PagingError(
        provider, f"{what}: still more after {max_pages} pages ({len(items)} items); stopped"
    )


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _Retryable(Exception):
    def __init__(self, error: ProviderError, wait: float | None) -> None:
        self.error = error
        self.wait = wait


class HttpClient:
    """An `httpx.AsyncClient` with a provider's limits, retries and error mapping."""

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
        rate: tuple[float, float] = (10, 1.0),
        timeout: float = 20.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_wait: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self._secrets = [s for s in secrets if s]
        self._limiter = AsyncLimiter(rate[0], rate[1])
        self._attempts = attempts
        self._backoff = backoff
        self._max_wait = max_wait
        self._sleep = sleep
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers or {}),
            timeout=timeout,
            transport=transport,
        )
        self.last_headers: httpx.Headers = httpx.Headers()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = exc.wait if isinstance(exc, _Retryable) else None
        if hinted is not None:
            return float(min(hinted, self._max_wait))
        base = self._backoff * 2 ** (state.attempt_number - 1)
        return float(min(base + random.uniform(0, base), self._max_wait))

    async def request(
        self,
        method: str,
        url: str,
        *,
        idempotent: bool,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries; return the successful response or raise a `ProviderError`."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(
                        method,
                        url,
                        idempotent,
                        json=json,
                        content=content,
                        params=params,
                        headers=headers,
                    )
        except _Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self,
        method: str,
        url: str,
        idempotent: bool,
        **kw: Any,
    ) -> httpx.Response:
        async with self._limiter:
            try:
                resp = await self._client.request(method, url, **kw)
            except httpx.TimeoutException as exc:
                err = UnavailableError(
                    self.provider,
                    f"{method} {self._scrub(url)} timed out ({type(exc).__name__})",
                    status=None,
                    maybe_applied=not isinstance(exc, httpx.ConnectTimeout),
                )
                if idempotent or isinstance(exc, httpx.ConnectTimeout):
                    raise _Retryable(err, None) from None
                raise err from None
            except httpx.TransportError as exc:
                # A failure to connect never reached the provider: safe to retry any call.
                connect = isinstance(exc, httpx.ConnectError)
                err = UnavailableError(
                    self.provider,
                    f"{method} {self._scrub(url)} failed: {type(exc).__name__}",
                    status=None,
                    maybe_applied=not connect,
                )
                if idempotent or connect:
                    raise _Retryable(err, None) from None
                raise err from None
        self.last_headers = resp.headers
        log.debug("%s %s %s -> %s", self.provider, method, self._scrub(url), resp.status_code)
        if resp.is_success:
            return resp
        detail = self._scrub(resp.text[:300].strip())
        what = f"{method} {self._scrub(url)} -> {resp.status_code}: {detail}"
        status = resp.status_code
        if status == 429:
            wait = retry_after_seconds(resp.headers.get("Retry-After"))
            raise _Retryable(RateLimitedError(self.provider, what, retry_after=wait), wait)
        if status >= 500:
            err = UnavailableError(self.provider, what, status=status, maybe_applied=not idempotent)
            if idempotent:
                raise _Retryable(err, retry_after_seconds(resp.headers.get("Retry-After")))
            raise err
        if status in (401, 403):
            raise AuthError(self.provider, what, status=status)
        if status == 404:
            raise NotFoundError(self.provider, what, status=status)
        raise ValidationError(self.provider, what, status=status)
