"""A campaign's standing: the playbook and prompt variants it was started with, and the one
process running it.

A campaign keeps the playbook it was started with: its caps, tiers and guardrails hold for every
later command (`gtm run` again, `approve`, the web inbox) whatever playbook those are given,
unless the user adopts a new one on purpose (`gtm run --adopt-playbook`). Two `gtm run`s of one
campaign at once would race for the same accounts, so a run holds the campaign's lock and a
second one refuses with a clear message.

A campaign may also name prompt variants (`gtm run --prompt-variants 1,2`): versions of the writer
prompts among which its accounts are split at random, to learn which one gets replies. The
versions and the seed that splits them are recorded with the campaign the first time and never
change after: a run that names other versions is refused (there is no adopting here, since the
accounts already assigned would mix two experiments).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel, ConfigDict, Field

from agents.steps import PROMPT_FOR_STEP
from gtm.domain.playbook import Playbook
from prompts import PromptError, load_prompt
from tools.sqlite import add_columns, connect

__all__ = [
    "CampaignBook",
    "CampaignBookBase",
    "CampaignBusy",
    "CampaignRecord",
    "PlaybookMismatch",
    "PromptVariants",
    "PromptVariantError",
    "VariantsMismatch",
    "WRITER_PROMPTS",
    "campaign_lock",
    "check_prompt_variants",
    "parse_prompt_variants",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS campaigns (
    name TEXT PRIMARY KEY,
    playbook TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    source TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    adopted_at TEXT,
    prompt_variants TEXT,
    variant_seed INTEGER
);
"""

_ADDED_COLUMNS = {"prompt_variants": "TEXT", "variant_seed": "INTEGER"}
"""Columns added since the first campaign books were written, brought to older files on open."""

WRITER_PROMPTS: tuple[str, ...] = tuple(dict.fromkeys(PROMPT_FOR_STEP.values()))
"""The prompts that write a message: every prompt variant must have each of them."""

_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


class PlaybookMismatch(ValueError):
    """A command names a playbook other than the one its campaign runs under."""


class CampaignBusy(RuntimeError):
    """Another process is running this campaign right now."""


class PromptVariantError(ValueError):
    """The prompt variants asked for are malformed, or a version lacks a writer prompt."""


class VariantsMismatch(ValueError):
    """A command names prompt variants other than the ones its campaign was started with."""


class PromptVariants(BaseModel):
    """The prompt versions a campaign splits its accounts among, and the seed that splits them.

    An account's variant is a hash of the seed and its account id, so it does not depend on the
    order of the list or on which accounts ran first, and anyone holding the seed can redo the
    split. The assignment itself is recorded on the thread when it is created (the ledger's
    `variant`): the hash is how a variant is drawn, the ledger is what a thread uses.
    """

    model_config = ConfigDict(frozen=True)

    versions: tuple[str, ...] = Field(min_length=1)
    """Prompt versions, as named on the command line (`<name>@<version>.md`)."""
    seed: int
    """Drawn once when the campaign is recorded."""

    def assign(self, account_id: str) -> str:
        """The version this account is drawn into: uniform over `versions`, independent per
        account (SHA-256 of seed and account id; not Python's `hash`, which is salted)."""
        digest = hashlib.sha256(f"{self.seed}\x1f{account_id}".encode()).digest()
        return self.versions[int.from_bytes(digest[:8], "big") % len(self.versions)]


class CampaignRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    playbook: Playbook
    source: str
    recorded_at: datetime
    adopted_at: datetime | None
    variants: PromptVariants | None = None
    """The prompt variants its accounts are split among; None: every account gets the same."""

    @property
    def fingerprint(self) -> str:
        return self.playbook.fingerprint


class CampaignBookBase(ABC):
    """The campaigns table's rules (what a campaign keeps, what is refused), once for every
    backend: `CampaignBook` (SQLite, in the ledger's file) and `gtm.app.pg_campaigns.
    PgCampaignBook` (Postgres) give only the row read and the row write."""

    _clock: Callable[[], datetime]
    _cache: dict[str, CampaignRecord | None]

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def _fetch(self, name: str) -> Mapping[str, Any] | None:
        """The campaign's row (`recorded_at`, `adopted_at` as ISO text or datetimes)."""

    @abstractmethod
    def _upsert(self, row: dict[str, Any]) -> None:
        """Insert the row, or on a name already there update only its playbook, fingerprint,
        source and adopted_at (`recorded_at` and the variants stay the first record's)."""

    def get(self, name: str) -> CampaignRecord | None:
        if name not in self._cache:
            row = self._fetch(name)
            self._cache[name] = _record(row) if row is not None else None
        return self._cache[name]

    def planned_variants(self, name: str, named: Sequence[str] | None) -> tuple[str, ...]:
        """The prompt versions `name` will run with if this command goes ahead: the recorded
        ones, or for a new campaign the ones `named`; () for none. Writes nothing, so the
        versions can be checked (`check_prompt_variants`) before the campaign is recorded.
        Raises `VariantsMismatch` where `resolve` would."""
        record = self.get(name)
        if record is None:
            return tuple(named or ())
        _check_variants(record, named)
        return record.variants.versions if record.variants is not None else ()

    def resolve(
        self,
        name: str,
        given: Playbook,
        *,
        explicit: bool,
        adopt: bool,
        variants: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> Playbook:
        """The playbook `name` runs under, recording it the first time.

        `given` is what this command was started with; `explicit` says the user named it (a
        file, not the shipped default). A campaign with a record keeps its playbook; an
        explicit, different one is refused unless `adopt`.

        `variants` are the prompt versions this command names. The first time they are recorded
        with a `seed` (drawn here unless given); later, naming none keeps the recorded ones and
        naming others raises `VariantsMismatch`, before anything is written.
        """
        record = self.get(name)
        if record is None:
            chosen = (
                PromptVariants(versions=tuple(variants), seed=_new_seed() if seed is None else seed)
                if variants
                else None
            )
            self._write(name, given, adopted=False, variants=chosen)
            return given
        _check_variants(record, variants)
        if record.fingerprint == given.fingerprint:
            return record.playbook
        if adopt:
            self._write(name, given, adopted=True)
            return given
        if explicit:
            raise PlaybookMismatch(
                f"campaign {name!r} runs under the playbook it was started with "
                f"({record.source or 'the shipped default'}, {record.fingerprint[:12]}, recorded "
                f"{record.recorded_at:%Y-%m-%d %H:%M} UTC); {given.source or 'this one'} "
                f"({given.fingerprint[:12]}) differs, so caps, tiers and guardrails would change "
                "mid-campaign. Leave out --playbook to keep the campaign's, or pass "
                "--adopt-playbook to switch the campaign to this one."
            )
        return record.playbook

    def _write(
        self,
        name: str,
        playbook: Playbook,
        *,
        adopted: bool,
        variants: PromptVariants | None = None,
    ) -> None:
        """Record the campaign, or adopt a playbook for it; the variants are written only with
        the first record (an adoption leaves them as they are)."""
        now = self._clock()
        self._upsert(
            {
                "name": name,
                "playbook": playbook.as_json(),
                "fingerprint": playbook.fingerprint,
                "source": playbook.source,
                "recorded_at": now,
                "adopted_at": now if adopted else None,
                "prompt_variants": (
                    json.dumps(list(variants.versions)) if variants is not None else None
                ),
                "variant_seed": variants.seed if variants is not None else None,
            }
        )
        self._cache.pop(name, None)


class CampaignBook(CampaignBookBase):
    """The campaigns table, in the ledger's SQLite file."""

    def __init__(self, path: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._db = connect(path, _SCHEMA)
        add_columns(self._db, "campaigns", _ADDED_COLUMNS)
        self._clock = clock
        self._cache = {}

    def close(self) -> None:
        self._db.close()

    def _fetch(self, name: str) -> Mapping[str, Any] | None:
        row = self._db.execute("SELECT * FROM campaigns WHERE name = ?", (name,)).fetchone()
        return dict(row) if row is not None else None

    def _upsert(self, row: dict[str, Any]) -> None:
        times = {k: row[k].isoformat() if row[k] else None for k in ("recorded_at", "adopted_at")}
        self._db.execute(
            "INSERT INTO campaigns (name, playbook, fingerprint, source, recorded_at, adopted_at,"
            " prompt_variants, variant_seed) VALUES (:name, :playbook, :fingerprint, :source,"
            " :recorded_at, :adopted_at, :prompt_variants, :variant_seed)"
            " ON CONFLICT(name) DO UPDATE SET playbook = excluded."
            "playbook, fingerprint = excluded.fingerprint, source = excluded.source, "
            "adopted_at = excluded.adopted_at",
            {**row, **times},
        )


def _new_seed() -> int:
    return secrets.randbits(31)


def _check_variants(record: CampaignRecord, named: Sequence[str] | None) -> None:
    """Naming no variants keeps the recorded ones; naming the same set (in any order) is fine;
    anything else would change an experiment half run, and is refused."""
    if not named:
        return
    have = record.variants.versions if record.variants is not None else ()
    if set(named) == set(have):
        return
    when = f"{record.recorded_at:%Y-%m-%d %H:%M} UTC"
    if not have:
        raise VariantsMismatch(
            f"campaign {record.name!r} was started on {when} without prompt variants, so its "
            f"accounts all use the current prompts; --prompt-variants {','.join(named)} would "
            "split only the accounts still to come. Leave out --prompt-variants to carry on, or "
            "start a new campaign (--campaign NEW) to compare prompt versions."
        )
    raise VariantsMismatch(
        f"campaign {record.name!r} splits its accounts among prompt versions {', '.join(have)} "
        f"(recorded {when}); --prompt-variants {','.join(named)} differs, and changing them "
        "mid-campaign would mix two experiments. Leave out --prompt-variants to keep the "
        "campaign's, or start a new campaign (--campaign NEW) to compare other versions."
    )


def parse_prompt_variants(text: str) -> tuple[str, ...]:
    """`"1,2"` → `("1", "2")`; `PromptVariantError` for an empty, repeated or odd version."""
    versions = tuple(v.strip() for v in text.split(","))
    bad = [v for v in versions if not _VERSION.fullmatch(v)]
    if bad or not versions:
        raise PromptVariantError(
            f"--prompt-variants {text!r}: give prompt versions separated by commas, e.g. 1,2 "
            "(letters, digits, '.', '_' or '-'; they name prompts/<name>@<version>.md)"
        )
    if len(set(versions)) != len(versions):
        raise PromptVariantError(f"--prompt-variants {text!r}: a version is named twice")
    return versions


def check_prompt_variants(versions: Sequence[str], prompts_dir: Path | None = None) -> None:
    """Every writer prompt exists in every version and declares that version, or
    `PromptVariantError` naming each file that is missing or wrong. Checked when a run starts,
    so a missing file stops it before any account is drafted rather than failing thread by
    thread; and a copy still declaring its old version would credit replies to the wrong one."""
    root = prompts_dir or Path(str(resources.files("prompts")))
    shown = str(prompts_dir) if prompts_dir is not None else "prompts"
    problems: list[str] = []
    for version in versions:
        for name in WRITER_PROMPTS:
            file = f"{shown}/{name}@{version}.md"
            try:
                prompt = load_prompt(name, prompts_dir, version=version)
            except PromptError as exc:
                archived = (root / f"{name}@{version}.md").exists()
                problems.append(str(exc) if archived else f"missing {file}")
                continue
            if prompt.version != version:
                problems.append(
                    f"{file} declares version {prompt.version!r}, not {version!r} (its drafts "
                    "would be credited to the wrong version)"
                )
    if problems:
        raise PromptVariantError(
            f"prompt variants {', '.join(versions)}: every variant needs each writer prompt ("
            + ", ".join(WRITER_PROMPTS)
            + "): "
            + "; ".join(problems)
        )


def _when(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _record(row: Mapping[str, Any]) -> CampaignRecord:
    playbook = Playbook.model_validate_json(row["playbook"]).model_copy(
        update={"source": row["source"]}
    )
    adopted = row["adopted_at"]
    variants = (
        PromptVariants(versions=tuple(json.loads(row["prompt_variants"])), seed=row["variant_seed"])
        if row["prompt_variants"]
        else None
    )
    return CampaignRecord(
        name=row["name"],
        playbook=playbook,
        source=row["source"],
        recorded_at=_when(row["recorded_at"]),
        adopted_at=_when(adopted) if adopted else None,
        variants=variants,
    )


@contextlib.contextmanager
def campaign_lock(data_dir: Path, name: str) -> Iterator[None]:
    """Hold `name`'s run lock for the duration; `CampaignBusy` if another process holds it.

    The lock is the operating system's (released when the holder dies, even by SIGKILL); a
    note beside it says who holds it, for the message a second run prints.
    """
    folder = data_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^\w.-]", "_", name)[:80] or "_"
    lock = FileLock(folder / f"{stem}.lock", timeout=0)
    holder = folder / f"{stem}.holder"
    try:
        lock.acquire()
    except Timeout:
        who = holder.read_text(encoding="utf-8").strip() if holder.exists() else "another process"
        raise CampaignBusy(
            f"campaign {name!r} is already running ({who}); wait for it to finish, or stop it "
            "(Ctrl-C is safe), then run it again"
        ) from None
    try:
        started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        holder.write_text(
            f"pid {os.getpid()} on {socket.gethostname()}, since {started}", encoding="utf-8"
        )
        yield
    finally:
        with contextlib.suppress(OSError):
            holder.unlink()
        lock.release()
