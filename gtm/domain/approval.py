"""The approval request: what a paused thread asks a reviewer, built once by the approve node.

The runner, the CLI and the web inbox read this one type instead of re-parsing a dict. In the
checkpoint it is stored as the interrupt value: an Agent Inbox `HumanInterrupt` (so LangGraph
Studio / Agent Inbox can drive the pause) with the request itself under `"request"`. Data dirs
written before this type existed hold the request's fields at the top level of that value;
`from_interrupt` reads both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gtm.domain.models import Contact, Draft, Fact

__all__ = ["ApprovalRequest", "Finding"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Finding(_Model):
    """One failed guardrail on the draft, as the reviewer sees it."""

    check: str = Field(description="Check name, e.g. 'length'.")
    finding: str = Field(description="What is wrong, quoting the offending span.")
    spans: tuple[str, ...] = Field(default=(), description="Offending text spans, verbatim.")


class ApprovalRequest(_Model):
    """A draft waiting for a human decision, with everything the reviewer needs to decide."""

    account_id: str
    company: str
    tier: int | None = Field(description="The playbook tier the account matched, if any.")
    review: Literal["always", "batch"] = Field(
        description="The tier's review mode: 'batch' drafts may be approved together."
    )
    contact: Contact = Field(description="Who the draft is written to.")
    draft: Draft
    facts: tuple[Fact, ...] = Field(description="All research facts; the draft cites some.")
    findings: tuple[Finding, ...] = Field(default=(), description="Guardrails the draft fails.")
    flagged: bool = Field(
        default=False, description="Still failing after the last automatic rewrite."
    )

    def human_interrupt(self) -> dict[str, Any]:
        """The Agent Inbox `HumanInterrupt`: action request, allowed responses, description."""
        draft, contact = self.draft, self.contact
        cited = set(draft.cited_fact_ids)
        tier = self.tier if self.tier is not None else "-"
        lines = [
            f"**{self.company}** (tier {tier}) → {contact.name}, {contact.title} via "
            f"{draft.channel}",
            "",
            draft.body,
            "",
            *[
                f"- [{f.id}] {f.text} ({f.source}{' · ' + f.url if f.url else ''})"
                for f in self.facts
                if f.id in cited
            ],
            *[f"- ⚠ {f.check}: {f.finding}" for f in self.findings],
        ]
        return {
            "action_request": {
                "action": draft.step,
                "args": {"subject": draft.subject, "body": draft.body},
            },
            "config": {
                "allow_ignore": True,
                "allow_respond": True,
                "allow_edit": True,
                "allow_accept": True,
            },
            "description": "\n".join(lines),
        }

    def interrupt_value(self) -> dict[str, Any]:
        """What the approve node pauses with: plain data, readable by Agent Inbox and by us."""
        return {**self.human_interrupt(), "request": self.model_dump(mode="json")}

    @classmethod
    def from_interrupt(cls, value: object) -> ApprovalRequest:
        """Read an interrupt value back: today's shape, or the flat one older data dirs hold.

        Raises `ValueError` (a pydantic `ValidationError` included) if it is neither.
        """
        if not isinstance(value, Mapping):
            raise ValueError(f"not an approval request: {type(value).__name__}")
        nested = value.get("request")
        if isinstance(nested, Mapping):
            return cls.model_validate(nested)
        return cls.model_validate({k: value[k] for k in cls.model_fields if k in value})
