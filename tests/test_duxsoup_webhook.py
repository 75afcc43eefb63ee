"""Dux-Soup's webhook over real HTTP on loopback: only the secret URL gets in, and a refused
post leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette

from gtm.app.doctor import diagnose
from gtm.app.loop import IngestReport, ingest_into
from gtm.app.settings import Settings, SettingsError, load_settings
from gtm.domain.events import Event
from gtm.web.webhooks import (
    DUXSOUP_KINDS,
    PayloadError,
    WebhookConfigError,
    check_secret,
    duxsoup_events,
    duxsoup_kinds,
    read_post,
    webhook_path,
    webhook_routes,
)
from tools.events import EventStore
from tools.outbox import Outbox

SECRET = "s3cr3t-Path-Segment_0123456789abcdefXYZ"
ANN = "https://www.linkedin.com/in/ann-lee/"


def envelope(type_: str = "connected", event: str = "create", **data: Any) -> dict[str, Any]:
    return {
        "userid": "117917531760586753354",
        "time": "2026-03-03T08:45:03.239Z",
        "type": type_,
        "event": event,
        "data": {"id": "id.11964767", "Profile": ANN, **data},
    }


def test_envelopes_map_to_events() -> None:
    [accepted] = duxsoup_events(envelope())
    assert accepted.kind == "connection_accepted" and accepted.channel == "linkedin"
    assert accepted.linkedin_url == "https://www.linkedin.com/in/ann-lee"
    assert accepted.at == datetime(2026, 3, 3, 8, 45, 3, 239000, tzinfo=UTC)
    [reply] = duxsoup_events(envelope("message", "received", Message="Happy to talk"))
    assert reply.kind == "message_received" and reply.text == "Happy to talk"
    assert reply.key != accepted.key
    later = envelope("message", "received") | {"time": "2026-03-04T08:00:00Z"}
    assert duxsoup_events(later)[0].key != reply.key  # a second message is a second event
    assert duxsoup_events(envelope("visit", "create")) == []  # acknowledged, not an event
    assert len(duxsoup_events([envelope(), envelope("visit", "update")])) == 1
    mixed = read_post([envelope("Visit", "Create"), envelope(), envelope("visit", "create")])
    assert len(mixed.events) == 1 and mixed.ignored == ["visit.create"]
    # A pair is shown as letters, digits, _ and - only: a post cannot write into the log.
    assert read_post(envelope("visit\nFORGED", "create")).ignored == ["visit?forged.create"]

    for bad, field in [
        ({**envelope(), "time": "yesterday"}, "time"),
        ({**envelope(), "time": "2026-03-03T08:45:03"}, "time"),  # no zone
        ({k: v for k, v in envelope().items() if k != "type"}, "type"),
        (envelope() | {"data": "x"}, "data"),
        (envelope(Profile="https://example.com/ann"), "data.Profile"),
        (envelope(id=""), "data.id"),
        ([envelope(), {"nope": 1}], "[1]."),
        ([], "body"),
        ("a string", "body"),
    ]:
        with pytest.raises(PayloadError) as exc:
            duxsoup_events(bad)
        assert field in str(exc.value), (bad, str(exc.value))


def test_the_mapping_is_extended_by_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    # What Dux-Soup really sends for an accept, once seen, is mapped without a code change;
    # a built-in guess that turns out wrong is switched off.
    kinds = duxsoup_kinds({"action.accepted": "connection_accepted", "connected.create": "ignore"})
    assert kinds[("action", "accepted")] == "connection_accepted"
    assert ("connected", "create") not in kinds and ("message", "received") in kinds
    assert dict(DUXSOUP_KINDS) == duxsoup_kinds({})  # the built-ins are left as they were
    post = read_post([envelope("action", "accepted"), envelope()], kinds)
    assert [e.kind for e in post.events] == ["connection_accepted"]
    assert post.ignored == ["connected.create"]
    for bad, named in [
        ({"action": "connection_accepted"}, "'action'"),
        ({"action.accepted": "accepted"}, "'action.accepted' = 'accepted'"),
    ]:
        with pytest.raises(WebhookConfigError, match=named):
            duxsoup_kinds(bad)

    # From the environment (or the config file), checked at load with the bad entry named.
    monkeypatch.delenv("GTM_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent")
    monkeypatch.setenv("GTM_DUXSOUP_WEBHOOK_KINDS", '{"Action.Accepted": "connection_accepted"}')
    loaded = load_settings()
    assert loaded.duxsoup_webhook_kinds == {"action.accepted": "connection_accepted"}
    for value, named in [
        ('{"action.accepted": "accept"}', "entry 'action.accepted' = 'accept'"),
        ('{"no stage": "connection_accepted"}', "entry 'no stage'"),
    ]:
        monkeypatch.setenv("GTM_DUXSOUP_WEBHOOK_KINDS", value)
        with pytest.raises(SettingsError) as exc:
            load_settings()
        assert "GTM_DUXSOUP_WEBHOOK_KINDS" in str(exc.value) and named in str(exc.value)
    monkeypatch.delenv("GTM_DUXSOUP_WEBHOOK_KINDS")
    settings = Settings(
        duxsoup_webhook_secret=SECRET, duxsoup_webhook_kinds={"action.accepted": "ignore"}
    )
    assert len(webhook_routes(settings, lambda evs: IngestReport())) == 1


async def test_doctor_shows_what_the_receiver_takes(tmp_path: Path) -> None:
    async def finding(**kw: Any) -> Any:
        s = Settings(data_dir=tmp_path, duxsoup_webhook_secret=SECRET, **kw)
        (found,) = [f for f in await diagnose(s) if f.component == "dux-soup webhook"]
        assert SECRET not in found.detail + found.fix
        return found

    built_in = await finding()
    assert built_in.ok and "built-in" in built_in.detail and "Send Sample" in built_in.fix
    mapped = await finding(duxsoup_webhook_kinds={"action.accepted": "connection_accepted"})
    assert "action.accepted -> connection_accepted" in mapped.detail
    no_receiver = await diagnose(Settings(data_dir=tmp_path))
    assert not [f for f in no_receiver if f.component == "dux-soup webhook"]


def test_the_secret_must_guard_a_url() -> None:
    for weak in ("", "short", "x" * 31, "a" * 40 + "/../", "a" * 40 + " b"):
        with pytest.raises(WebhookConfigError):
            check_secret(weak)
    assert webhook_path(SECRET) == f"/webhooks/duxsoup/{SECRET}"
    assert webhook_routes(Settings(), lambda evs: IngestReport()) == []
    with_secret = Settings(duxsoup_webhook_secret=SECRET)
    assert len(webhook_routes(with_secret, lambda evs: IngestReport())) == 1
    with pytest.raises(WebhookConfigError):
        webhook_routes(Settings(duxsoup_webhook_secret="short"), lambda evs: IngestReport())


def _app(data: Path) -> Starlette:
    """The route as `gtm serve` mounts it (`webhook_routes`): stores opened on the server's own
    loop, and one pair mapped by configuration on top of the built-in ones."""
    stores: dict[str, Any] = {}

    def ingest(events: Sequence[Event]) -> IngestReport:
        return ingest_into(stores["events"], stores["outbox"], events)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stores["events"] = EventStore(data / "events.sqlite")
        stores["outbox"] = Outbox(data / "outbox.sqlite")
        try:
            yield
        finally:
            stores["events"].close()
            stores["outbox"].close()

    settings = Settings(
        duxsoup_webhook_secret=SECRET,
        duxsoup_webhook_kinds={"action.accepted": "connection_accepted"},
    )
    return Starlette(routes=webhook_routes(settings, ingest), lifespan=lifespan)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    outbox = Outbox(tmp_path / "outbox.sqlite", clock=lambda: datetime(2026, 3, 1, tzinfo=UTC))
    outbox.reserve(
        key="k-connect",
        campaign="spring",
        account_id="acme.ai",
        contact_key="https://www.linkedin.com/in/ann-lee",
        step="linkedin_connect",
        channel="linkedin",
        sender="seat",
    )
    outbox.mark_sent("k-connect", "dx-queue-1")
    outbox.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        _app(tmp_path),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def _stored(data: Path) -> list[tuple[str, str | None]]:
    store = EventStore(data / "events.sqlite")
    try:
        return [(s.event.key, s.outbox_key) for s in store.events()]
    finally:
        store.close()


def test_webhook_over_http(server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{server}/webhooks/duxsoup/{SECRET}"
    body = json.dumps(envelope()).encode()
    headers = {"Content-Type": "application/json"}
    with httpx.Client(timeout=10) as http:
        # Unsigned, forged, or a near miss of the secret: refused like an unknown page.
        for wrong in (
            f"{server}/webhooks/duxsoup/",
            f"{server}/webhooks/duxsoup",
            f"{server}/webhooks/duxsoup/{SECRET[:-1]}X",
            f"{server}/webhooks/duxsoup/{SECRET}x",
            f"{server}/webhooks/duxsoup/{SECRET.upper()}",
        ):
            assert http.post(wrong, content=body, headers=headers).status_code == 404, wrong
        assert _stored(tmp_path) == []

        # Malformed posts through the right door: 4xx, and nothing recorded.
        malformed: list[tuple[bytes, int]] = [
            (b"{not json", 400),
            (b"\xff\xfe", 400),
            (json.dumps({"type": "connected"}).encode(), 422),
            (json.dumps(envelope(Profile="not a profile")).encode(), 422),
            (json.dumps([envelope(), envelope() | {"time": "soon"}]).encode(), 422),
            (b'{"userid": "' + b"x" * (300 * 1024) + b'"}', 413),
        ]
        for bad, status in malformed:
            got = http.post(url, content=bad, headers=headers)
            assert got.status_code == status, (bad[:40], got.text)
        assert _stored(tmp_path) == []

        # A type we do not act on is acknowledged, recorded nowhere, and named in the answer
        # and (the first time only) in the log, so what Dux-Soup sends can be seen and mapped.
        for _ in range(2):
            visit = http.post(url, json=envelope("visit", "create"))
            assert visit.status_code == 202 and visit.json() == {"ignored": ["visit.create"]}
        assert _stored(tmp_path) == []
        told = [r.getMessage() for r in caplog.records if r.name == "gtm.web.webhooks"]
        assert (
            len(told) == 1 and "visit.create" in told[0] and "GTM_DUXSOUP_WEBHOOK_KINDS" in told[0]
        )

        # The genuine post: matched to the connection request; delivered again, a duplicate.
        first = http.post(url, content=body, headers=headers)
        assert first.status_code == 200, first.text
        answer: dict[str, Any] = {
            "new": 1,
            "duplicate": 0,
            "matched": 1,
            "unmatched": 0,
            "ignored": [],
        }
        assert first.json() == answer
        again = http.post(url, content=body, headers=headers)
        answer = {"new": 0, "duplicate": 1, "matched": 0, "unmatched": 0, "ignored": []}
        assert again.json() == answer
        # The pair mapped by configuration is taken like a built-in one; a visit in the same
        # post is named as ignored.
        accepted = envelope("action", "accepted") | {"time": "2026-03-05T08:00:00Z"}
        both = http.post(url, json=[accepted, envelope("visit", "update")]).json()
        assert both["duplicate"] == 0 and both["ignored"] == ["visit.update"]
        stranger = envelope(
            "message", "received", Profile="https://www.linkedin.com/in/zed", Message="hello?"
        )
        assert http.post(url, json=stranger).json()["unmatched"] == 1

    stored = _stored(tmp_path)
    assert sorted((key.split(":")[2], outbox) for key, outbox in stored) == [
        ("action.accepted", "k-connect"),
        ("connected.create", "k-connect"),
        ("message.received", None),
    ]
    # The server side (uvicorn, starlette, ours) never writes the secret; the test's own
    # client (httpx) logs the URL it calls, which is not the server's doing.
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert not [r for r in server_side if SECRET in r.getMessage()]
