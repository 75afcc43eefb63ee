"""The outreach graph on LangGraph Server: `langgraph.json` served by `langgraph dev`.

A real in-memory LangGraph API server runs in a subprocess on loopback with the repository's
`langgraph.json`, a scripted OpenAI-compatible writer and a fresh data directory. Threads are
driven only through `langgraph_sdk`, the way Agent Inbox drives them: run to the approval pause,
read the `HumanInterrupt`, answer with a `HumanResponse` through `Command(resume=...)`. The
local LinkedIn twin and the outbox in the data directory show what was sent.

Every proxy variable points at a loopback tripwire that records any connection: a server or
library reaching for the internet (telemetry, version checks, LangSmith) fails the tests instead
of hanging them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from gtm.app.accounts import load_accounts
from gtm.app.campaigns import CampaignBook
from gtm.domain.approval import ApprovalRequest
from gtm.domain.playbook import DEFAULT_PLAYBOOK, load_playbook
from tests.support.openai_server import ScriptedOpenAIServer
from tests.support.web import BLANK_ACCOUNT, ROOT, WEB_ACCOUNTS, write_with_one_fabrication

pytestmark = pytest.mark.timeout(120)

LANGGRAPH = Path(sys.executable).with_name("langgraph")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Tripwire:
    """A loopback listener that records every connection made to it and closes it."""

    sock: socket.socket = field(default_factory=socket.socket)
    hits: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(1)
                try:
                    self.hits.append(conn.recv(200) or b"(connected)")
                except OSError:
                    self.hits.append(b"(connected)")


@dataclass
class Server:
    url: str
    data: Path
    tripwire: Tripwire
    log: Path

    def actions(self, kind: str) -> list[tuple[str, str]]:
        """(profile, text) of every `kind` action the local LinkedIn twin performed."""
        db = sqlite3.connect(self.data / "linkedin.sqlite")
        try:
            rows = db.execute(
                "SELECT profile_url, text FROM actions WHERE kind = ? ORDER BY n", (kind,)
            ).fetchall()
        finally:
            db.close()
        return [(str(p), str(t)) for p, t in rows]

    def outbox(self, account_id: str) -> list[tuple[str, str]]:
        db = sqlite3.connect(self.data / "outbox.sqlite")
        try:
            rows = db.execute(
                "SELECT step, state FROM outbox WHERE account_id = ? ORDER BY step", (account_id,)
            ).fetchall()
        finally:
            db.close()
        return [(str(s), str(t)) for s, t in rows]


def _server_env(data: Path, model_url: str, tripwire: Tripwire, home: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        GTM_DATA_DIR=str(data),
        GTM_MODEL_BASE_URL=model_url,
        GTM_MODEL="scripted",
        OPENAI_API_KEY="sk-test-dummy-not-a-real-key",
        LANGSMITH_TRACING="false",
        LANGCHAIN_TRACING_V2="false",
        LANGGRAPH_CLI_NO_ANALYTICS="1",
        LANGGRAPH_NO_VERSION_CHECK="true",
        ANONYMIZED_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
        HTTP_PROXY=tripwire.url,
        HTTPS_PROXY=tripwire.url,
        ALL_PROXY=tripwire.url,
        http_proxy=tripwire.url,
        https_proxy=tripwire.url,
        all_proxy=tripwire.url,
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not LANGGRAPH.exists():
        pytest.fail(
            f"{LANGGRAPH} is missing: install the dev extra (it holds langgraph-cli[inmem])"
        )
    root = tmp_path_factory.mktemp("langgraph-server")
    data, cwd, home = root / "data", root / "cwd", root / "home"
    cwd.mkdir()
    home.mkdir()
    tripwire = Tripwire()
    port = _free_port()
    log = root / "server.log"
    with (
        ScriptedOpenAIServer(responder=write_with_one_fabrication) as model,
        log.open("wb") as out,
    ):
        proc = subprocess.Popen(
            [
                str(LANGGRAPH),
                "dev",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-browser",
                "--no-reload",
                "--allow-blocking",
                "--config",
                str(ROOT / "langgraph.json"),
            ],
            cwd=cwd,  # the in-memory runtime keeps its files under ./.langgraph_api
            env=_server_env(data, model.base_url, tripwire, home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                try:
                    if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "langgraph dev did not start in 60 s"
                time.sleep(0.2)
            yield Server(url=url, data=data, tripwire=tripwire, log=log)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            tripwire.sock.close()


@pytest.fixture(scope="module")
def accounts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The web fixtures' accounts and Blankpage (whose drafts come back empty), as JSON."""
    csv = tmp_path_factory.mktemp("lists") / "accounts.csv"
    csv.write_text(
        WEB_ACCOUNTS.read_text(encoding="utf-8").rstrip("\n") + f"\n{BLANK_ACCOUNT}\n",
        encoding="utf-8",
    )
    listing = load_accounts(csv)
    assert not listing.errors, listing.errors
    return {a.company: a.model_dump(mode="json") for a in listing.accounts}


async def _to_the_pause(
    client: LangGraphClient, account: dict[str, Any], campaign: str = "server"
) -> tuple[str, dict[str, Any]]:
    """A new thread for `account`, run until it pauses; its thread id and interrupt value."""
    thread = await client.threads.create()
    tid = thread["thread_id"]
    inp: dict[str, Any] = {"campaign": campaign, "channel": "linkedin", "account": account}
    await client.runs.wait(tid, "outreach", input=inp, raise_error=True)
    return tid, await _pause(client, tid)


async def _pause(client: LangGraphClient, tid: str) -> dict[str, Any]:
    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted", thread["status"]
    pauses = [p for per_task in thread["interrupts"].values() for p in per_task]
    assert len(pauses) == 1, pauses
    value: dict[str, Any] = pauses[0]["value"]
    return value


async def _answer(client: LangGraphClient, tid: str, response: dict[str, Any]) -> dict[str, Any]:
    """Resume as Agent Inbox does: a list of one `HumanResponse`; the thread's values after."""
    await client.runs.wait(tid, "outreach", command={"resume": [response]}, raise_error=True)
    values = (await client.threads.get_state(tid))["values"]
    assert isinstance(values, dict)
    return values


def _with_client(server: Server, go: Callable[[LangGraphClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with get_client(url=server.url) as client:
            await go(client)

    asyncio.run(main())


def test_an_accept_through_the_sdk_sends_exactly_once(
    server: Server, accounts: dict[str, dict[str, Any]]
) -> None:
    async def go(client: LangGraphClient) -> None:
        tid, pause = await _to_the_pause(client, accounts["Forkwise"])
        # The Agent Inbox `HumanInterrupt`, with gtm's whole request beside it.
        assert set(pause) == {"action_request", "config", "description", "request"}
        assert pause["config"] == {
            "allow_ignore": True,
            "allow_respond": True,
            "allow_edit": True,
            "allow_accept": True,
        }
        assert pause["action_request"]["action"] == "linkedin_connect"
        body = pause["action_request"]["args"]["body"]
        assert body.startswith("Hi Priya") and body in pause["description"]
        request = ApprovalRequest.from_interrupt(pause)
        assert (request.company, request.draft.body) == ("Forkwise", body)
        assert server.actions("connect") == []  # nothing goes out before the human answers

        values = await _answer(client, tid, {"type": "accept", "args": pause["action_request"]})
        assert values["status"] == "sent"
        assert values["decision"]["reviewer"] == "agent-inbox"
        profile = "https://www.linkedin.com/in/priya-natarajan"
        assert server.actions("connect") == [(profile, body)]

        # The same answer again, and the account again on a new thread: no second message.
        await _answer(client, tid, {"type": "accept", "args": pause["action_request"]})
        again = await client.threads.create()
        inp: dict[str, Any] = {
            "campaign": "server",
            "channel": "linkedin",
            "account": accounts["Forkwise"],
        }
        await client.runs.wait(again["thread_id"], "outreach", input=inp, raise_error=True)
        state = await client.threads.get_state(again["thread_id"])
        assert state["next"] == ["approve"]  # a second draft: approving it sends nothing more
        second = await _answer(client, again["thread_id"], {"type": "accept", "args": None})
        # The outbox answers with the first send's receipts: the same keys, no new action.
        assert (second["status"], second["sent_keys"]) == ("sent", values["sent_keys"])
        assert server.actions("connect") == [(profile, body)]
        assert server.outbox(accounts["Forkwise"]["account_id"]) == [
            ("linkedin_connect", "sent"),
            ("linkedin_visit", "sent"),
        ]

    _with_client(server, go)
    assert server.tripwire.hits == []


def test_an_edit_sends_the_edited_text(server: Server, accounts: dict[str, dict[str, Any]]) -> None:
    async def go(client: LangGraphClient) -> None:
        tid, pause = await _to_the_pause(client, accounts["Helpwell"])
        edited = (
            "Hi Sofia, your case study on resolving 62% of tickets without a human caught my "
            "eye. How do you keep retrieval fresh as the catalogue changes? Open to comparing "
            "notes?"
        )
        action = {"action": pause["action_request"]["action"], "args": {"body": edited}}
        values = await _answer(client, tid, {"type": "edit", "args": action})
        assert values["status"] == "sent"
        assert values["draft"]["body"] == edited
        assert (
            "https://www.linkedin.com/in/sofia-lindqvist",
            edited,
        ) in server.actions("connect")

    _with_client(server, go)
    assert server.tripwire.hits == []


def test_a_response_rewrites_the_draft_and_pauses_again(
    server: Server, accounts: dict[str, dict[str, Any]]
) -> None:
    async def go(client: LangGraphClient) -> None:
        tid, pause = await _to_the_pause(client, accounts["Findstack"])
        note = "Mention their enterprise search launch."
        values = await _answer(client, tid, {"type": "response", "args": note})
        assert values["decision"]["action"] == "regenerate"
        assert values["decision"]["instructions"] == note
        again = await _pause(client, tid)  # a new draft, waiting for a human again
        assert again["request"]["account_id"] == pause["request"]["account_id"]

    _with_client(server, go)
    assert server.outbox(accounts["Findstack"]["account_id"]) == []
    assert server.tripwire.hits == []


def test_what_the_channel_cannot_carry_pauses_again_and_ignore_rejects(
    server: Server, accounts: dict[str, dict[str, Any]]
) -> None:
    """Blankpage's draft is empty: accepting it, or an edit with no text, is not acted on (the
    thread pauses again and says why), and `ignore` rejects it. Nothing is sent."""

    async def go(client: LangGraphClient) -> None:
        tid, pause = await _to_the_pause(client, accounts["Blankpage"])
        assert pause["action_request"]["args"]["body"] == ""
        values = await _answer(client, tid, {"type": "accept", "args": None})
        assert values["status"] != "sent"
        again = await _pause(client, tid)
        assert again["description"].startswith("⚠ Not acted on: length:")
        assert again["request"] == pause["request"]

        blank_edit = {"type": "edit", "args": {"action": "linkedin_connect", "args": {"body": " "}}}
        await _answer(client, tid, blank_edit)
        again = await _pause(client, tid)
        assert again["description"].startswith("⚠ Not acted on: not understood")

        values = await _answer(client, tid, {"type": "ignore", "args": None})
        assert (values["status"], values["skip_reason"]) == ("rejected", "rejected")
        thread = await client.threads.get(tid)
        assert thread["status"] == "idle"

    _with_client(server, go)
    assert server.outbox(accounts["Blankpage"]["account_id"]) == []
    assert [p for p, _ in server.actions("connect")].count(
        "https://www.linkedin.com/in/mara-olsen"
    ) == 0
    assert server.tripwire.hits == []


def test_a_thread_runs_under_its_campaigns_playbook(
    server: Server, accounts: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A campaign started with a playbook that allows no connection request this week: its
    approved note waits for the cap instead of going out under the server's default playbook."""
    shipped = (ROOT / "gtm" / "domain" / DEFAULT_PLAYBOOK).read_text(encoding="utf-8")
    assert "linkedin_connection_requests_per_week: 100" in shipped
    strict = tmp_path / "no-connects.yaml"
    strict.write_text(
        shipped.replace(
            "linkedin_connection_requests_per_week: 100", "linkedin_connection_requests_per_week: 0"
        ),
        encoding="utf-8",
    )
    server.data.mkdir(parents=True, exist_ok=True)  # this test may be the server's first run
    book = CampaignBook(server.data / "ledger.sqlite")
    try:
        book.resolve("no-connects", load_playbook(strict), explicit=True, adopt=False)
    finally:
        book.close()

    async def go(client: LangGraphClient) -> None:
        tid, pause = await _to_the_pause(client, accounts["Pagewright"], campaign="no-connects")
        values = await _answer(client, tid, {"type": "accept", "args": pause["action_request"]})
        assert values["status"] == "deferred", values

    _with_client(server, go)
    assert ("linkedin_connect", "sent") not in server.outbox(accounts["Pagewright"]["account_id"])
    assert server.tripwire.hits == []


def test_a_run_context_is_refused_not_mistaken_for_dependencies(
    server: Server, accounts: dict[str, dict[str, Any]]
) -> None:
    """gtm's dependencies come from the server's settings; a client cannot swap them."""

    async def go(client: LangGraphClient) -> None:
        thread = await client.threads.create()
        inp: dict[str, Any] = {
            "campaign": "server",
            "channel": "linkedin",
            "account": accounts["Leadlight"],
        }
        run = await client.runs.create(
            thread["thread_id"], "outreach", input=inp, context={"sender_name": "Mallory"}
        )
        await client.runs.join(thread["thread_id"], run["run_id"])
        done = await client.runs.get(thread["thread_id"], run["run_id"])
        assert done["status"] == "error"

    _with_client(server, go)
    assert server.outbox(accounts["Leadlight"]["account_id"]) == []
    assert "takes no run context" in server.log.read_text(errors="replace")
