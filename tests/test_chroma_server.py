"""Account memory on a real Chroma server (`GTM_CHROMA_URL`): `chroma run` on loopback.

The memory contract of the embedded Chroma holds here too (the same scenario, imported from
test_backends), with the vectors computed by our MiniLM; `forget` leaves nothing any client of
the server can read; two workspaces in two processes share one memory; and a server that is
down, refuses the token or holds another embedding's collection is one clear line at start.

What is not tested because it cannot be promised: that the bytes leave the server's disk. The
server's write log and index files are the server operator's (`chroma vacuum`, server stopped).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings as ChromaSettings
from pydantic import SecretStr

from gtm.app.doctor import diagnose
from gtm.app.privacy import forget
from gtm.app.settings import Settings
from gtm.app.workspace import open_workspace
from gtm.domain.models import Touch
from memory import chroma_http
from memory.chroma import COLLECTION, ChromaMemory
from memory.chroma_http import MemoryServerError, close_http_client
from tests.support.chroma_server import ChromaServer, TokenGate, chroma_server, free_port
from tests.support.cli import run_gtm
from tests.test_backends import test_memory_contract as test_memory_contract_on_a_server

__all__ = ["chroma_server", "test_memory_contract_on_a_server"]

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def database(chroma_server: ChromaServer) -> str:
    """A database of this test's own on the session's server."""
    return chroma_server.new_database()


@pytest.fixture
def memory(chroma_server: ChromaServer, database: str) -> Iterator[ChromaMemory]:
    """What `test_memory_contract_on_a_server` (test_backends' scenario) runs against."""
    m = ChromaMemory.server(chroma_server.url, database=database)
    yield m
    m.close()


@pytest.fixture
def client(chroma_server: ChromaServer, database: str) -> Iterator[Any]:
    """Another client of the server, on this test's database, with no embedding of ours."""
    c = chromadb.HttpClient(
        host="127.0.0.1",
        port=chroma_server.port,
        database=database,
        settings=ChromaSettings(anonymized_telemetry=False),
    )
    yield c
    close_http_client(c)


def _draft(account: str, contact: str, text: str, days: int = 0) -> Touch:
    return Touch(
        account_id=account,
        kind="draft",
        text=text,
        at=AT + timedelta(minutes=days),
        campaign="c",
        contact=contact,
    )


async def test_remember_history_recall_and_similar_drafts(memory: ChromaMemory) -> None:
    await memory.remember(_draft("acme", "Dana", "Your Pinecone migration costs", 1), key="a1")
    await memory.remember(_draft("acme", "Dana", "Hiring bakers for the new shop", 2), key="a2")
    await memory.remember(_draft("beta", "Lee", "Pinecone migration pricing question"), key="b1")
    await memory.remember(_draft("gamma", "Kim", "Sourdough starters for bakeries"), key="g1")

    assert [t.text for t in await memory.history("acme")] == [
        "Hiring bakers for the new shop",
        "Your Pinecone migration costs",
    ]
    (best,) = await memory.recall("acme", "moving off a vector database vendor", k=1)
    assert best.text == "Your Pinecone migration costs"
    found = await memory.similar_drafts(
        "c", "Your Pinecone migration costs", exclude_account="acme", k=2
    )
    assert [t.account_id for t, _ in found] == ["beta", "gamma"]
    cosines = [cos for _, cos in found]
    assert cosines[0] is not None and cosines[1] is not None and cosines[0] > cosines[1]


async def test_vectors_on_the_server_are_ours_not_the_servers(
    memory: ChromaMemory, client: Any
) -> None:
    text = "We discussed their Pinecone migration costs"
    await memory.remember(_draft("acme", "Dana", text), key="k")
    stored = client.get_collection(COLLECTION).get(ids=["k"], include=["embeddings"])["embeddings"]
    ours = memory._embedding(  # noqa: SLF001 - the very model the memory embeds with
        [text]
    )[0]
    assert len(stored[0]) == 384
    assert max(abs(float(a) - float(b)) for a, b in zip(stored[0], ours, strict=True)) < 1e-5


async def test_the_servers_collection_persists_its_index_every_100_records(
    memory: ChromaMemory, client: Any, chroma_server: ChromaServer, database: str
) -> None:
    """As the embedded memory (test_chroma_index_settings): each write costs the server in
    proportion to the records written since its last persist. A collection made before, with
    Chroma's default, is changed when a memory opens it."""
    index = client.get_collection(COLLECTION).configuration["hnsw"]
    assert (index["sync_threshold"], index["space"]) == (100, "cosine")
    client.get_collection(COLLECTION).modify(configuration={"hnsw": {"sync_threshold": 1000}})
    assert client.get_collection(COLLECTION).configuration["hnsw"]["sync_threshold"] == 1000
    again = ChromaMemory.server(chroma_server.url, database=database)
    again.close()
    index = client.get_collection(COLLECTION).configuration["hnsw"]
    assert (index["sync_threshold"], index["space"]) == (100, "cosine")


async def test_forget_leaves_nothing_any_client_can_read(
    chroma_server: ChromaServer, database: str, client: Any
) -> None:
    memory = ChromaMemory.server(chroma_server.url, database=database)
    other = ChromaMemory.server(chroma_server.url, database=database, index_max_age=0)
    for i in range(12):
        who = "Dana Ruiz" if i % 4 == 0 else "Omar Haddad"
        await memory.remember(_draft(f"acct{i % 3}", who, f"Note {i} for {who}", i), key=f"k{i}")
    # the other process has Dana's drafts in its near-duplicate index before the erasure
    assert any(
        "Dana" in t.text
        for t, _ in await other.similar_drafts("c", "Note for Dana Ruiz", exclude_account="x")
    )

    assert await memory.forget_person(["dana ruiz"]) == 3
    assert await memory.forget_person(["dana ruiz"]) == 0  # nothing left to find
    assert await memory.forget_person(["omar haddad"], ["acct1"]) == 3
    for i in range(12, 16):  # later writes land
        await memory.remember(_draft("acct2", "Lee Park", f"Later note {i}", i), key=f"k{i}")

    raw = client.get_collection(COLLECTION)
    everything = raw.get(include=["documents", "metadatas"])
    assert not [d for d in everything["documents"] if "Dana" in d]
    assert not [m for m in everything["metadatas"] if m.get("contact") == "Dana Ruiz"]
    assert raw.get(ids=["k0", "k4", "k8", "k1", "k7"])["ids"] == []
    near = raw.query(
        query_embeddings=memory._embedding(["Note 0 for Dana Ruiz"]),  # noqa: SLF001
        n_results=raw.count(),
        include=["documents"],
    )
    assert not [d for d in near["documents"][0] if "Dana" in d]
    assert raw.count() == 12 - 3 - 3 + 4
    for m in (memory, other):  # both processes, the other one's index reloaded from the server
        assert not [t for t in await m.history("acct0", limit=100) if "Dana" in t.text]
        found = await m.similar_drafts("c", "Note for Dana Ruiz", exclude_account="x", k=20)
        assert found and not [t for t, _ in found if "Dana" in t.text]
    assert await memory.forget_account("acct2") == 3 + 4
    assert await other.history("acct2") == []
    memory.close()
    other.close()


_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import UTC, datetime
    from gtm.app.settings import Settings
    from gtm.app.workspace import open_workspace
    from gtm.domain.models import Touch

    async def main() -> None:
        settings = Settings(
            data_dir=sys.argv[1], chroma_url=sys.argv[2], chroma_database=sys.argv[3]
        )
        async with open_workspace(settings, with_model=False) as ws:
            touch = Touch(account_id="shared.ai", kind="fact", text="Uses Weaviate today",
                          at=datetime(2026, 11, 30, tzinfo=UTC))
            await ws.deps.memory.remember(touch, key="from-process-a")

    asyncio.run(main())
    """
)


async def test_two_workspaces_in_two_processes_share_the_memory(
    chroma_server: ChromaServer, database: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(tmp_path / "a"), chroma_server.url, database],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    settings = Settings(
        data_dir=tmp_path / "b", chroma_url=SecretStr(chroma_server.url), chroma_database=database
    )
    async with open_workspace(settings, with_model=False) as ws:
        assert [t.text for t in await ws.deps.memory.history("shared.ai")] == [
            "Uses Weaviate today"
        ]
    assert not (tmp_path / "b" / "memory" / "chroma").exists()  # nothing embedded was opened


def test_a_server_that_is_down_is_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MemoryServerError) as caught:
        ChromaMemory.server(url)
    message = str(caught.value)
    assert message.startswith(f"cannot reach the Chroma server at {url}") and "\n" not in message


def test_a_server_that_never_answers_is_one_line_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chroma_http, "CONNECT_TIMEOUT_S", 0.5)
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(MemoryServerError, match="cannot reach the Chroma server"):
            ChromaMemory.server(url)


def test_the_token_is_sent_and_a_wrong_one_is_one_line_without_it(
    chroma_server: ChromaServer, database: str
) -> None:
    secret = "s3cret-token-value"
    with TokenGate(chroma_server.url, secret) as gate:
        with pytest.raises(MemoryServerError) as caught:
            ChromaMemory.server(gate.url, token="wrong-token-value", database=database)
        message = str(caught.value)
        assert "refused the token (HTTP 401)" in message and "GTM_CHROMA_TOKEN" in message
        assert "wrong-token-value" not in message and "\n" not in message
        with pytest.raises(MemoryServerError, match="refused the token"):
            ChromaMemory.server(gate.url, database=database)  # none at all

        gate.seen.clear()
        memory = ChromaMemory.server(gate.url, token=secret, database=database)
        assert memory._collection.count() == 0  # noqa: SLF001 - a call through the gate
        assert gate.seen and all(sent == secret for sent in gate.seen)
        memory.close()


def test_a_collection_the_server_embedded_is_refused(
    chroma_server: ChromaServer, database: str, client: Any
) -> None:
    client.create_collection(COLLECTION)  # the server's default embedding function
    with pytest.raises(MemoryServerError) as caught:
        ChromaMemory.server(chroma_server.url, database=database)
    message = str(caught.value)
    assert "was made with another embedding" in message and "\n" not in message


def test_a_collection_of_other_vectors_is_refused(
    chroma_server: ChromaServer, database: str, client: Any
) -> None:
    ours = ChromaMemory.server(chroma_server.url, database=database)
    ours.close()
    client.delete_collection(COLLECTION)
    ef: Any = ours._embedding  # noqa: SLF001 - same name and config, so chromadb lets it by
    made = client.create_collection(
        COLLECTION, embedding_function=ef, metadata={"hnsw:space": "l2"}
    )
    with pytest.raises(MemoryServerError, match="measures distance by 'l2'"):
        ChromaMemory.server(chroma_server.url, database=database)
    client.delete_collection(made.name)
    made = client.create_collection(
        COLLECTION, embedding_function=ef, metadata={"hnsw:space": "cosine"}
    )
    made.add(ids=["x"], documents=["x"], embeddings=[[0.5] * 768])
    with pytest.raises(MemoryServerError, match="768-dimensional vectors, not MiniLM's 384"):
        ChromaMemory.server(chroma_server.url, database=database)


def test_a_database_the_server_lacks_is_one_line(chroma_server: ChromaServer) -> None:
    with pytest.raises(MemoryServerError, match=r"has no database 'nope' in tenant"):
        ChromaMemory.server(chroma_server.url, database="nope")


async def test_doctor_reports_the_server(
    chroma_server: ChromaServer, database: str, tmp_path: Path
) -> None:
    s = Settings(
        data_dir=tmp_path, chroma_url=SecretStr(chroma_server.url), chroma_database=database
    )
    (fresh,) = [f for f in await diagnose(s) if f.component == "memory: chroma server"]
    assert fresh.ok and "no memory stored yet" in fresh.detail and "Chroma" in fresh.detail
    memory = ChromaMemory.server(chroma_server.url, database=database)
    await memory.remember(_draft("acme", "Dana", "hello"), key="k")
    memory.close()
    (used,) = [f for f in await diagnose(s) if f.component == "memory: chroma server"]
    assert used.ok and used.detail.endswith("; 1 records")
    down = s.model_copy(update={"chroma_url": SecretStr(f"http://127.0.0.1:{free_port()}")})
    (bad,) = [f for f in await diagnose(down) if f.component == "memory: chroma server"]
    assert not bad.ok and "cannot reach the Chroma server" in bad.detail and bad.fix


async def test_doctor_in_another_process_reads_the_collection_it_did_not_make(
    chroma_server: ChromaServer, database: str, tmp_path: Path
) -> None:
    """A collection stores the name of the embedding that made it, and a client that did not
    make it rebuilds that embedding from chromadb's registry: `gtm doctor`, a process of its
    own, once crashed here with "Embedding function gtm-minilm-int8 not found" (found by
    tests/test_deploy_stack.py). The test above writes and checks in one process, where the
    writer had already made the embedding known."""
    memory = ChromaMemory.server(chroma_server.url, database=database)
    await memory.remember(_draft("acme", "Dana", "hello"), key="k")
    memory.close()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "GTM_DATA_DIR": str(tmp_path / "data"),
        "GTM_CHROMA_URL": chroma_server.url,
        "GTM_CHROMA_DATABASE": database,
        "ANONYMIZED_TELEMETRY": "False",
        "COLUMNS": "200",
    }
    done = run_gtm(env, "doctor")
    assert "Traceback" not in done.stderr, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if "chroma server" in ln)
    assert "1 records" in line, done.stdout


async def test_gtm_forget_erases_the_person_from_the_server(
    chroma_server: ChromaServer, database: str, client: Any, tmp_path: Path
) -> None:
    settings = Settings(
        data_dir=tmp_path, chroma_url=SecretStr(chroma_server.url), chroma_database=database
    )
    async with open_workspace(settings, with_model=False) as ws:
        memory = ws.deps.memory
        await memory.remember(_draft("acme.ai", "dana@acme.ai", "Hi Dana, about search"), key="1")
        await memory.remember(_draft("acme.ai", "lee@acme.ai", "Hi Lee, about search"), key="2")
        done = await forget(ws, "Dana@Acme.ai", requested_by="test")
    assert done.erased["memory records"] == 1
    left = client.get_collection(COLLECTION).get(include=["documents", "metadatas"])
    assert left["documents"] == ["Hi Lee, about search"]
    assert [m["contact"] for m in left["metadatas"]] == ["lee@acme.ai"]


def test_the_cli_says_in_one_line_that_the_server_is_down(tmp_path: Path) -> None:
    token = "tok-never-shown-0123456789"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
        "COLUMNS": "200",
        "GTM_DATA_DIR": str(tmp_path / "data"),
        "GTM_CHROMA_URL": f"http://127.0.0.1:{free_port()}",
        "GTM_CHROMA_TOKEN": token,
    }
    # The servers too: their workspace opens inside the web server's start-up, which would
    # print it as a startup traceback (found running the compose file without Chroma up).
    for command in (
        ["forget", "dana@acme.ai", "--yes"],
        ["serve", "--port", "0"],
        ["inbox", "--web", "--port", "0"],
    ):
        done = run_gtm(env, *command, timeout=120)
        assert done.returncode == 2, (command, done.stdout + done.stderr)
        assert done.stderr.startswith(
            "error: cannot reach the Chroma server at http://127.0.0.1:"
        ), (command, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert token not in done.stdout + done.stderr
