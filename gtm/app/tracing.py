"""LangSmith tracing, redacted: no credential and no erased person ever leaves in a trace.

Tracing is LangChain's own: off unless its standard environment turns it on
(`LANGSMITH_TRACING=true`, with `LANGSMITH_API_KEY`, `LANGSMITH_ENDPOINT`, `LANGSMITH_PROJECT`).
Nothing here turns it on. When it is on, every run goes through a LangSmith `Client` whose
`anonymizer` (applied by the client to inputs, outputs, metadata and errors before they are
sent) replaces

- every secret in the settings (model key, provider tokens, SMTP and IMAP passwords, ...) with
  `***`, and
- every person erased on request (`gtm forget`), found by the one-way fingerprints the
  suppression list keeps: a contact record whose address or profile is erased is emptied, and
  its name, address and profile are replaced with `[erased]` wherever else they appear.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gtm.domain.models import Contact
from tools.suppression import SuppressionList

if TYPE_CHECKING:
    from langchain_core.tracers.langchain import LangChainTracer

    from gtm.app.settings import Settings

__all__ = ["Redactor", "erased_check", "tracing_enabled", "redacting_tracer", "redacted_tracing"]

ERASED = "[erased]"
HIDDEN = "***"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PROFILE = re.compile(r"(?:https?://)?(?:[\w-]+\.)?linkedin\.com/in/[\w%-]+/?", re.IGNORECASE)


class Redactor:
    """The anonymizer: a JSON value in, the same value without secrets or erased people out.

    `erased` answers whether a contact was erased; it is called from whichever thread the
    LangSmith client serialises runs on. What it learns about an erased person (their name as
    found next to their address) is remembered, so a later run that only names them is
    redacted too.
    """

    def __init__(self, secrets: list[str], erased: Callable[[Contact], bool]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
        self.erased = erased
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str], bool] = {}
        self._needles: set[str] = set()

    def _is_erased(self, email: str | None, url: str | None) -> bool:
        key = (email or "", url or "")
        with self._lock:
            if key in self._known:
                return self._known[key]
        try:
            contact = Contact(name="", email=email or None, linkedin_url=url or None)
            found = self.erased(contact)
        except Exception:  # noqa: BLE001 - unparseable or unreadable: hide rather than leak
            found = True
        with self._lock:
            self._known[key] = found
        return found

    def _learn(self, value: Any) -> None:
        """Find erased people in `value`: contact records, and addresses/profiles in text."""
        if isinstance(value, dict):
            email, url = value.get("email"), value.get("linkedin_url")
            if isinstance(email, str | None) and isinstance(url, str | None) and (email or url):
                if self._is_erased(email, url):
                    name = value.get("name")
                    with self._lock:
                        self._needles.update(
                            v for v in (email, url, name) if isinstance(v, str) and v.strip()
                        )
            for v in value.values():
                self._learn(v)
        elif isinstance(value, list):
            for v in value:
                self._learn(v)
        elif isinstance(value, str):
            for m in (*_EMAIL.finditer(value), *_PROFILE.finditer(value)):
                text = m.group(0)
                is_email = "@" in text
                if self._is_erased(text if is_email else None, None if is_email else text):
                    with self._lock:
                        self._needles.add(text)

    def _pattern(self) -> re.Pattern[str] | None:
        with self._lock:
            needles = sorted(self._needles, key=len, reverse=True)
        if not needles:
            return None
        return re.compile(
            "|".join(r"(?<!\w)" + re.escape(n) + r"(?!\w)" for n in needles), re.IGNORECASE
        )

    def _clean(self, value: Any, people: re.Pattern[str] | None) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                value = value.replace(secret, HIDDEN)
            return people.sub(ERASED, value) if people is not None else value
        if isinstance(value, dict):
            if people is not None and any(
                isinstance(value.get(k), str) and people.fullmatch(value[k])
                for k in ("email", "linkedin_url")
            ):
                return ERASED  # the whole contact record goes
            return {k: self._clean(v, people) for k, v in value.items()}
        if isinstance(value, list):
            return [self._clean(v, people) for v in value]
        return value

    def __call__(self, value: Any) -> Any:
        self._learn(value)
        return self._clean(value, self._pattern())


def _settings_secrets(settings: Settings) -> list[str]:
    from pydantic import SecretStr

    out = []
    for name in type(settings).model_fields:
        v = getattr(settings, name)
        if isinstance(v, SecretStr):
            out.append(v.get_secret_value())
    key = settings.model_settings().api_key
    if key is not None:
        out.append(key.get_secret_value())
    for var in ("OPENAI_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        if value := os.environ.get(var):  # read by the libraries themselves, not our settings
            out.append(value)
    return out


def _erased_by_file(path: Path) -> Callable[[Contact], bool]:
    """`is_erased` against the suppression list at `path`, one connection per thread (SQLite
    connections stay in the thread that opened them); nobody is erased while it is missing."""
    local = threading.local()

    def erased(contact: Contact) -> bool:
        if not path.exists():
            return False
        store = getattr(local, "store", None)
        if store is None:
            store = local.store = SuppressionList(path)
        return bool(store.is_erased(contact))

    return erased


def _erased_in_database(url: str) -> Callable[[Contact], bool]:
    """`is_erased` against the Postgres suppression list, opened when first asked (its pool
    serves every thread) and closed when the process exits."""
    lock = threading.Lock()
    opened: list[Any] = []

    def erased(contact: Contact) -> bool:
        with lock:
            if not opened:
                import atexit

                from tools.pg_suppression import PgSuppressionList

                opened.append(PgSuppressionList(url))
                atexit.register(opened[0].close)
        return bool(opened[0].is_erased(contact))

    return erased


def erased_check(settings: Settings) -> Callable[[Contact], bool]:
    """Whether a contact was erased, asked of the suppression list the workspace uses: the
    data directory's file, or the database's when `GTM_DATABASE_URL` is set."""
    if settings.database_url is not None:
        return _erased_in_database(settings.database_url.get_secret_value())
    return _erased_by_file(settings.data_dir / "suppressions.sqlite")


def tracing_enabled() -> bool:
    """LangSmith tracing as LangChain decides it (`LANGSMITH_TRACING` / `LANGCHAIN_TRACING_V2`)."""
    from langsmith.utils import tracing_is_enabled

    return bool(tracing_is_enabled())


def redacting_tracer(settings: Settings) -> LangChainTracer | None:
    """A LangSmith tracer whose client redacts, or None when tracing is off. Put in a run's
    callbacks, it replaces the tracer LangChain would add on its own (which does not redact)."""
    if not tracing_enabled():
        return None
    from langchain_core.tracers.langchain import LangChainTracer
    from langsmith import Client

    redact = Redactor(_settings_secrets(settings), erased_check(settings))
    return LangChainTracer(client=Client(anonymizer=redact))


@contextlib.contextmanager
def redacted_tracing(settings: Settings) -> Iterator[LangChainTracer | None]:
    """While open, every LangChain run in this context that is traced goes through a redacting
    tracer (nothing changes when tracing is off). Waits for traces to be sent on exit."""
    tracer = redacting_tracer(settings)
    if tracer is None:
        yield None
        return
    from langchain_core.tracers.context import tracing_v2_callback_var

    token = tracing_v2_callback_var.set(tracer)
    try:
        yield tracer
    finally:
        tracing_v2_callback_var.reset(token)
        tracer.wait_for_futures()
        tracer.client.flush()
