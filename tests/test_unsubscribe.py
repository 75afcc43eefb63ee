"""One-click unsubscribe (RFC 8058): the signed link in the email, and the receiver that records
one `unsubscribe` event per email however often it is clicked, and never on a mere GET."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gtm.app.loop import IngestReport, ingest_into
from gtm.app.settings import Settings, SettingsError, load_settings
from gtm.domain.events import Event
from gtm.web.webhooks import unsubscribe_route
from tools.events import EventStore
from tools.outbox import Outbox
from tools.smtp import SmtpEmail, build_message
from tools.unsubscribe import key_of, one_click_url, token

SECRET = "k" * 20 + "-unsubscribe-secret-0123"
KEY = "0123456789abcdef0123456789abcdef"
BASE = "https://gtm.vectorly.example"
SENT_ID = "<gtm.feed@vectorly.example>"


def test_a_token_names_its_key_and_cannot_be_forged() -> None:
    t = token(KEY, SECRET)
    assert key_of(t, SECRET) == KEY
    assert key_of(t, SECRET.replace("k", "j")) is None
    other = "f" * 32
    assert key_of(f"{other}.{t.rsplit('.', 1)[1]}", SECRET) is None  # a signature moved over
    for bad in ("", KEY, f"{KEY}.", "a/b.c", f"{KEY}.{'0' * 32}"):
        assert key_of(bad, SECRET) is None
    assert one_click_url(BASE + "/", KEY, SECRET) == f"{BASE}/unsubscribe/{t}"
    with pytest.raises(ValueError):
        one_click_url("http://gtm.vectorly.example", KEY, SECRET)
    with pytest.raises(ValueError):
        token(KEY, "short")
    with pytest.raises(ValueError):
        token("not a key", SECRET)


def _msg(**kw: Any) -> EmailMessage:
    return build_message(
        sender="alex@vectorly.example",
        sender_name="Alex",
        to="bob@acme.ai",
        to_name="Bob",
        subject="hi",
        body="hello",
        key=KEY,
        unsubscribe="mailto:alex@vectorly.example?subject=unsubscribe",
        **kw,
    )


def test_the_email_carries_the_one_click_link_before_the_mailto() -> None:
    plain = _msg()
    assert plain["List-Unsubscribe"] == "<mailto:alex@vectorly.example?subject=unsubscribe>"
    assert plain["List-Unsubscribe-Post"] is None  # unchanged without a one-click URL
    url = one_click_url(BASE, KEY, SECRET)
    msg = _msg(one_click=url)
    assert msg["List-Unsubscribe"] == f"<{url}>, <mailto:alex@vectorly.example?subject=unsubscribe>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_the_smtp_client_signs_each_email_with_its_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="both"):
        SmtpEmail(sender="a@b.example", sender_name="A", host="127.0.0.1", one_click_secret=SECRET)
    with pytest.raises(ValueError, match="https"):
        SmtpEmail(
            sender="a@b.example",
            sender_name="A",
            host="127.0.0.1",
            one_click_base_url="http://x.example",
            one_click_secret=SECRET,
        )
    smtp = SmtpEmail(
        sender="alex@vectorly.example",
        sender_name="Alex",
        host="127.0.0.1",
        one_click_base_url=BASE,
        one_click_secret=SECRET,
    )
    sent: list[EmailMessage] = []
    monkeypatch.setattr(smtp, "_send", sent.append)
    asyncio.run(smtp.send(to="bob@acme.ai", to_name="Bob", subject="hi", body="x", key=KEY))
    assert sent[0]["List-Unsubscribe"].startswith(f"<{BASE}/unsubscribe/{token(KEY, SECRET)}>")


def test_settings_want_https_and_a_long_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    ok = Settings(unsubscribe_base_url=BASE, unsubscribe_secret=SECRET)
    assert ok.unsubscribe_base_url == BASE
    with pytest.raises(ValueError, match="https"):
        Settings(unsubscribe_base_url="http://gtm.vectorly.example")
    monkeypatch.setenv("GTM_UNSUBSCRIBE_SECRET", "tooshort-secret")
    with pytest.raises(SettingsError) as short:
        load_settings()
    assert "GTM_UNSUBSCRIBE_SECRET" in str(short.value)
    assert "tooshort-secret" not in str(short.value)  # a secret is never echoed


def _app(data: Path) -> Starlette:
    stores: dict[str, Any] = {}

    def ingest(events: Sequence[Event]) -> IngestReport:
        return ingest_into(stores["events"], stores["outbox"], events)

    def lookup(key: str) -> Any:
        return stores["outbox"].get(key)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stores["events"] = EventStore(data / "events.sqlite")
        stores["outbox"] = Outbox(data / "outbox.sqlite")
        try:
            yield
        finally:
            stores["events"].close()
            stores["outbox"].close()

    clock = lambda: datetime(2026, 3, 5, 12, tzinfo=UTC)  # noqa: E731
    return Starlette(
        routes=[unsubscribe_route(SECRET, lookup, ingest, clock=clock)], lifespan=lifespan
    )


def test_one_click_records_one_unsubscribe_and_a_get_records_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=lambda: datetime(2026, 3, 2, tzinfo=UTC))
    outbox.reserve(
        key=KEY,
        campaign="spring",
        account_id="acme.ai",
        contact_key="bob@acme.ai",
        step="email",
        channel="email",
        sender="alex@vectorly.example",
    )
    outbox.mark_sent(KEY, SENT_ID)
    outbox.close()
    path = f"/unsubscribe/{token(KEY, SECRET)}"
    form = {"content-type": "application/x-www-form-urlencoded"}
    with TestClient(_app(tmp_path)) as client:
        page = client.get(path)
        assert page.status_code == 200 and 'method="post"' in page.text
        assert client.post("/unsubscribe/" + KEY + "." + "0" * 32, content=b"").status_code == 404
        assert client.post(path, content=b"hello", headers=form).status_code == 400
        assert EventStore(tmp_path / "events.sqlite").events() == []  # GET and refusals: none

        done = client.post(path, content=b"List-Unsubscribe=One-Click", headers=form)
        assert done.status_code == 200 and "unsubscribed" in done.text
        # A provider posting multipart, and a second click: still one event.
        multi = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
        assert multi.status_code == 200
        # A signed link whose email is gone (the person was erased): 200, nothing recorded.
        gone = f"/unsubscribe/{token('e' * 32, SECRET)}"
        assert client.post(gone, content=b"List-Unsubscribe=One-Click", headers=form).is_success

    store = EventStore(tmp_path / "events.sqlite")
    stored = store.events()
    store.close()
    assert [(s.event.kind, s.event.source, s.event.email, s.outbox_key) for s in stored] == [
        ("unsubscribe", "web", "bob@acme.ai", KEY)
    ]
    assert stored[0].event.in_reply_to == (SENT_ID,)
