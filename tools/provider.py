"""What every backend behind a seam (CRM, LinkedIn, email, alerts) can do besides its job.

`gtm doctor` reaches each configured backend through `check()`; the provider factory closes each
through `aclose()`; `gtm forget` erases a person through `erase_person()`. So the application
never needs to know which backend it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["Provider", "HoldsPeople"]


class Provider(Protocol):
    async def check(self) -> str:
        """Reach the backend without acting (nothing sent, posted or written); say what was
        seen, or where a local backend keeps its data. Raises the backend's own errors."""
        ...

    async def aclose(self) -> None:
        """Release connections and files."""
        ...


class HoldsPeople(Provider, Protocol):
    async def erase_person(self, emails: Sequence[str], urls: Sequence[str]) -> int | str:
        """Erase what this backend keeps about one person, named by (normalised) email
        addresses and LinkedIn profile URLs: how many records went, or a note for a human when
        the provider keeps them and they must be erased there."""
        ...
