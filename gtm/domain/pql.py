"""Product-qualified signals as research facts: one wording wherever a signal comes from.

A signal (sign-ups, active users, usage growth) may come from an account list's PQL column
(`gtm.app.list_columns`), from a CRM list's company record (`gtm run --from hubspot:list/ID`) or
from the company record research finds for a CSV campaign's account, when the playbook's
`crm_lists.pql_properties` names the property. Each becomes the same fact of kind `signal`,
"{company}: {label}: {value}", with the source it came from (`file:row:column`, or "hubspot
company 123 property product_signups"), so the qualification card reads its figure against the
playbook's thresholds whichever source gave it.
"""

from __future__ import annotations

from collections.abc import Sequence

from gtm.domain.models import Fact

__all__ = ["PQL", "PQL_CHARS", "pql_facts"]

PQL: dict[str, str] = {
    "signups": "sign-ups",
    "active_users": "active users",
    "usage_growth": "usage growth",
}
"""Product-qualified signals a list (or a product-analytics export, or a CRM property) may carry
per account, with the label their fact uses. Each non-empty value becomes an account fact of kind
`signal`, "{company}: {label}: {value}", with its source; the qualification card reads its
figure against the playbook's thresholds."""

PQL_CHARS = 300
"""A signal's value, at most, in its fact: a figure, not a cell's whole essay."""


def pql_facts(company: str, cells: Sequence[tuple[str, str, str]]) -> tuple[Fact, ...]:
    """(signal, value, source) triples as facts, e.g. "Acme: sign-ups: 12"."""
    return tuple(
        Fact(
            id=f"s{i}",
            text=f"{company}: {PQL[fld]}: {' '.join(value.split())[:PQL_CHARS]}",
            source=source,
            kind="signal",
        )
        for i, (fld, value, source) in enumerate(cells, 1)
    )
