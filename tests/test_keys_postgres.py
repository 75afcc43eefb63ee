"""Dux-Soup's and SMTP's key ledgers on Postgres (issue 17, workers on several machines): with
GTM_DATABASE_URL set, `gtm.app.providers` gives both clients the database's `acted` table, not a
file of their own data directory, so a client on a second machine (here: another data
directory) that is asked for a key the first one already acted on does not act again.

Against the loopback Dux-Soup test server and an aiosmtpd server on loopback, with the
session's temporary Postgres cluster."""

from __future__ import annotations

from pathlib import Path

import psycopg
from aiosmtpd.controller import Controller

from gtm.app.providers import open_email, open_linkedin
from gtm.app.settings import Settings
from tests.support.postgres import database_url, postgres_server  # noqa: F401
from tests.support.providers import FakeDuxSoup, SmtpInbox
from tests.support.servers import free_port
from tools.pg import Database

PROFILE = "https://www.linkedin.com/in/dana-ruiz"


def _acted(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT key, provider_id FROM acted").fetchall())


def _dux(fake: FakeDuxSoup, data_dir: Path, url: str | None) -> Settings:
    return Settings(
        data_dir=data_dir,
        linkedin="duxsoup",
        duxsoup_base_url=fake.base_url,
        duxsoup_user_id=fake.user_id,
        duxsoup_key=fake.key,
        database_url=url,
    )


async def test_a_second_machine_does_not_queue_a_key_the_first_queued(
    tmp_path: Path, url: str
) -> None:
    with FakeDuxSoup() as fake:
        first = open_linkedin(_dux(fake, tmp_path / "machine-1", url))
        sent = await first.connect(PROFILE, "Hi Dana, one question?", key="k-connect")
        await first.aclose()  # the worker is gone; its data directory stays on its machine
        second = open_linkedin(_dux(fake, tmp_path / "machine-2", url))
        again = await second.connect(PROFILE, "Hi Dana, one question?", key="k-connect")
        other = await second.visit(PROFILE, key="k-visit")
        await second.aclose()
    assert again.provider_id == sent.provider_id
    assert [q["command"] for q in fake.queue] == ["connect", "visit"]  # connect queued once
    assert _acted(url) == {"k-connect": sent.provider_id, "k-visit": other.provider_id}
    for machine in ("machine-1", "machine-2"):  # no key file: the database holds the keys
        assert not (tmp_path / machine / "duxsoup.sqlite").exists()


async def test_without_the_url_each_data_directory_keeps_its_own_file(tmp_path: Path) -> None:
    """Unchanged without GTM_DATABASE_URL: the key file of the data directory (so a second
    data directory does not know the key: what the database is for)."""
    with FakeDuxSoup() as fake:
        for machine in ("machine-1", "machine-2"):
            client = open_linkedin(_dux(fake, tmp_path / machine, None))
            await client.visit(PROFILE, key="k-visit")
            await client.visit(PROFILE, key="k-visit")  # one data directory: once
            await client.aclose()
            assert (tmp_path / machine / "duxsoup.sqlite").is_file()
    assert len(fake.queue) == 2


async def test_smtp_on_a_second_machine_does_not_send_a_key_the_first_sent(
    tmp_path: Path, url: str
) -> None:
    inbox = SmtpInbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    shared = Database(url, max_size=2)  # the workspace's pool, handed to the factory
    try:

        def settings(machine: str) -> Settings:
            return Settings(
                data_dir=tmp_path / machine,
                email="smtp",
                smtp_host="127.0.0.1",
                smtp_port=controller.port,
                smtp_starttls=False,
                database_url=url,
            )

        mail = dict(to="dana@acme.ai", to_name="Dana", subject="Hi", body="One question?")
        first = open_email(settings("machine-1"), database=shared)
        sent = await first.send(**mail, key="k-mail")
        await first.aclose()  # closes its ledger, not the shared pool
        second = open_email(settings("machine-2"))  # its own pool from the URL
        again = await second.send(**mail, key="k-mail")
        await second.aclose()
        assert len(inbox.messages) == 1 and again.provider_id == sent.provider_id
        with shared.connection() as conn:  # the shared pool is still open
            assert conn.execute("SELECT count(*) FROM acted").fetchone() == (1,)
    finally:
        shared.close()
        controller.stop()
    assert not (tmp_path / "machine-1" / "smtp.sqlite").exists()


def test_the_keys_a_data_directory_acted_on_move_to_postgres(url: str, tmp_path: Path) -> None:
    """`gtm db migrate-from-sqlite` carries both clients' key files into `acted`, so a key a
    provider acted on before the move is still known after it (a send left in doubt by a crash
    before the move is not made again)."""
    from gtm.app.pg_import import migrate_from_sqlite
    from tools.pg_keys import PgKeyLedger
    from tools.sqlite import KeyLedger

    for name, key, provider_id in (
        ("duxsoup.sqlite", "k-linkedin-1", "dux-1"),
        ("smtp.sqlite", "k-email-1", "<m1@example.test>"),
    ):
        ledger = KeyLedger(tmp_path / name)
        ledger.put(key, provider_id)
        ledger.close()
    moved = migrate_from_sqlite(Settings(data_dir=tmp_path, database_url=url))
    assert sum(m.rows for m in moved if m.table == "acted") == 2
    assert _acted(url) == {"k-linkedin-1": "dux-1", "k-email-1": "<m1@example.test>"}
    keys = PgKeyLedger(url)
    try:
        assert keys.get("k-linkedin-1") == "dux-1"
    finally:
        keys.close()
