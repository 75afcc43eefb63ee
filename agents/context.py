"""The one typed context every node receives: models, stores, channels, clock, playbook.

Nodes never read the environment or build clients; the CLI (or a test) assembles a `Deps` and
passes it as the graph's runtime context.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from gtm.domain.playbook import Playbook
from memory.base import AccountMemory
from tools.alerts import Alerts
from tools.channels import EmailChannel, LinkedInChannel
from tools.crm import CRM
from tools.events import EventStore
from tools.outbox import Outbox
from tools.profiles import ProfileStore
from tools.suppression import SuppressionList

if TYPE_CHECKING:  # hints only: a command that reads state does not load them (issue 20)
    from langchain_core.language_models import BaseChatModel

    from tools.web import WebResearcher

__all__ = ["Deps"]


@dataclass(kw_only=True, frozen=True)
class Deps:
    model: BaseChatModel
    """Chat model used by personalize (any OpenAI-compatible endpoint)."""
    model_name: str
    """Recorded on every draft."""
    crm: CRM
    linkedin: LinkedInChannel
    email: EmailChannel
    memory: AccountMemory
    outbox: Outbox
    """Idempotent send ledger: consulted before every provider call."""
    suppressions: SuppressionList
    playbook: Playbook
    clock: Callable[[], datetime]
    """Now, timezone-aware UTC. Injected so tests control time."""
    sender_name: str
    sender_company: str
    prompts_dir: Path | None = None
    """Alternative prompt directory (eval harness, prompt experiments); None = shipped prompts."""
    alerts: Alerts | None = None
    """Where escalations, red flags and errors go (Slack or the local alert log)."""
    prompt_version: str | None = None
    """Use this version of every prompt (an archived `<name>@<version>.md`); None = current.
    A campaign with prompt variants sets it per thread, to the thread's variant."""
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    """Waits between paced actions. Injected so tests move a fake clock instead of waiting."""
    rng: random.Random = field(default_factory=random.Random)
    """Draws the random gap between two paced actions."""
    events: EventStore | None = None
    """What came back (replies, bounces, opt-outs): a follow-up is not sent after one."""
    web: WebResearcher | None = None
    """Reads each account's website for research; None (GTM_WEB_CONTACT unset): no web."""
    profiles: ProfileStore | None = None
    """What Dux-Soup's visits saw on contacts' LinkedIn profiles; None: no such facts."""
