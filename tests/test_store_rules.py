"""The outbox and the suppression list decide in one place for both backends.

`tools.outbox_logic.OutboxStore` and `tools.suppression.SuppressionStore` hold the rules (caps,
pacing, cooldowns; canonical forms, probes, erasure); the SQLite and Postgres stores give only
queries and locking. A backend that defines a rule method again has forked the rules: the two
could then answer differently, and the contract suites would catch it only for the inputs they
happen to try.
"""

from __future__ import annotations

import inspect

import pytest

from tools.outbox import Outbox
from tools.outbox_logic import OutboxStore
from tools.pg_outbox import PgOutbox
from tools.pg_suppression import PgSuppressionList
from tools.suppression import SuppressionList, SuppressionStore

OUTBOX_RULES = ["reserve", "cooldown_hit", "_cooldown", "count", "get", "mark_sent", "mark_failed"]
SUPPRESSION_RULES = ["add", "add_person", "erase", "named", "import_csv", "is_erased", "check"]


@pytest.mark.parametrize(
    ("base", "store", "rules"),
    [
        (OutboxStore, Outbox, [*OUTBOX_RULES, "mark_unknown"]),
        (OutboxStore, PgOutbox, [*OUTBOX_RULES, "mark_unknown"]),
        (SuppressionStore, SuppressionList, [*SUPPRESSION_RULES, "check_identifiers"]),
        (SuppressionStore, PgSuppressionList, [*SUPPRESSION_RULES, "check_identifiers"]),
    ],
)
def test_a_backend_gives_queries_and_inherits_every_rule(
    base: type, store: type, rules: list[str]
) -> None:
    assert issubclass(store, base)
    assert not inspect.isabstract(store), f"{store.__name__} leaves a query unimplemented"
    for rule in rules:
        assert rule in vars(base), f"{base.__name__} lost its rule {rule}"
        # A backend may wrap a rule (Postgres runs it again while the database is away), but
        # only the base's own function: no rule of its own.
        mine = vars(store).get(rule)
        wrapped = getattr(mine, "__wrapped__", None)
        assert mine is None or wrapped is vars(base)[rule], (
            f"{store.__name__} redefines {base.__name__}.{rule}"
        )
