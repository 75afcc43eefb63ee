"""The playbook's `crm_lists:` section: how a campaign from a CRM list (`gtm run --from
hubspot:list/ID`) screens the people on it, and which company properties it reads product
signals from.

Product-qualified signals (sign-ups, active users, usage growth) often live on the CRM's company
record, written there by a product-analytics sync. `pql_properties` names, per CRM, the property
(HubSpot) or attribute (Attio) holding each one; a list campaign, and research in a CSV
campaign whose CRM is HubSpot or Attio, reads those and turns each non-empty value into the
same signal fact a list column gives, so the qualification card reads it against its
thresholds. Nothing named, nothing read.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["CrmLists", "CrmName", "PQL_SIGNALS"]

CrmName = Literal["hubspot", "attio"]
PQL_SIGNALS = ("signups", "active_users", "usage_growth")
"""The product signals a CRM property may hold; the account list's PQL columns by the same
names (`gtm.app.list_columns.PQL`)."""
_PROPERTY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$")
"""A HubSpot property's internal name or an Attio attribute's slug (record values are keyed by
slug)."""


class CrmLists(BaseModel):
    """How a campaign from a CRM list (`gtm run --from hubspot:list/ID`) screens the people on
    it before anything is drafted, beyond intake's own checks, and what it reads besides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recent_activity_days: int = Field(
        default=30,
        ge=0,
        strict=True,
        description="A person the CRM shows activity with (a call, email, meeting or note, by "
        "anyone) within this many days is skipped; 0: not checked.",
    )
    closed_deal_stages: tuple[str, ...] = Field(
        default=(),
        description="Deal stages (HubSpot stage ids, Attio stage titles) that count as closed "
        "besides the CRM's own (HubSpot's closed flag, Attio's Won and Lost); a person with a "
        "deal in any other stage, or at a company with one, is skipped.",
    )
    pql_properties: dict[CrmName, dict[str, str]] = Field(
        default_factory=dict,
        description="Per CRM, the company property (HubSpot internal name, Attio attribute "
        "slug) holding each product signal (signups, active_users, usage_growth); each "
        "non-empty value becomes a signal fact naming the record and property. Empty: none read.",
    )

    @field_validator("pql_properties")
    @classmethod
    def _known_signals(cls, v: dict[CrmName, dict[str, str]]) -> dict[CrmName, dict[str, str]]:
        for crm, props in v.items():
            unknown = [s for s in props if s not in PQL_SIGNALS]
            if unknown:
                raise ValueError(
                    f"{crm}: unknown signal(s) {', '.join(map(repr, unknown))}; "
                    f"the signals are {', '.join(PQL_SIGNALS)}"
                )
            for signal, name in props.items():
                if not isinstance(name, str) or not _PROPERTY.match(name):
                    raise ValueError(
                        f"{crm}.{signal}: {name!r} is not a property name (letters, digits, "
                        "'_' and '-', like product_signups)"
                    )
        return {crm: {s: p[s] for s in PQL_SIGNALS if s in p} for crm, p in v.items()}

    def pql_for(self, crm: CrmName) -> dict[str, str]:
        """Signal -> property name to read from `crm`'s company records (empty: none)."""
        return dict(self.pql_properties.get(crm, {}))
