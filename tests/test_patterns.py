"""`gtm.domain.patterns.any_of`: the joined pattern finds a match exactly when one of its parts
does, for the playbook's own patterns; patterns it cannot join safely are not joined."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from gtm.domain.patterns import any_of
from gtm.domain.playbook import load_playbook

PLAYBOOK = load_playbook()
RULES = PLAYBOOK.qualification
GROUPS = {
    "injection_phrases": PLAYBOOK.guardrails.injection_patterns,
    **{name: RULES.rule(name).patterns for name in ("economic_buyer", "identified_pain")},
}
# Words the patterns are made of, so that random texts hit them as often as they miss them.
VOCAB = sorted(
    {w for ps in GROUPS.values() for p in ps for w in re.findall(r"[A-Za-z]{2,}", p.pattern)}
)
TEXT = st.lists(
    st.one_of(
        st.sampled_from(VOCAB),
        st.sampled_from(VOCAB).map(str.upper),
        st.text(alphabet="abc XYZ-_.,:;!?'\n0123456789", max_size=8),
    ),
    max_size=14,
).map(lambda parts: " ".join(parts))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(GROUPS)), TEXT, st.sampled_from(["", "x", " ", "_"]))
def test_joined_matches_exactly_when_a_part_does(group: str, text: str, glue: str) -> None:
    patterns = GROUPS[group]
    joined = any_of(patterns)
    assert joined is not None, f"{group}: the default playbook's patterns join"
    for t in (text, glue + text + glue):
        assert (joined.search(t) is not None) == any(p.search(t) for p in patterns), (group, t)


def test_the_default_rules_all_join() -> None:
    """Every rule of the default playbook gets the one-scan test, or the speed-up is lost."""
    for name in (
        "metrics", "economic_buyer", "decision_criteria", "decision_process",
        "identified_pain", "champion",
    ):  # fmt: skip
        assert any_of(RULES.rule(name).patterns) is not None, name


def test_patterns_that_cannot_be_joined_are_not() -> None:
    """Each is then tried on its own, as before: numbered back-references would point at
    another part's group, a name used twice or an inline global flag does not compile, and
    parts with different flags cannot share one."""
    assert any_of((re.compile(r"(a)\1"), re.compile("b"))) is None
    assert any_of((re.compile(r"(a)?(?(1)b|c)"), re.compile("d"))) is None
    assert any_of((re.compile("(?P<n>a)"), re.compile("(?P<n>b)"))) is None
    assert any_of((re.compile("(?i)a"), re.compile("b"))) is None
    assert any_of((re.compile("a", re.IGNORECASE), re.compile("b"))) is None
    assert any_of(()) is None
    joined = any_of((re.compile("fo+", re.IGNORECASE), re.compile("ba[rz]", re.IGNORECASE)))
    assert joined is not None and joined.search("a BAZ") and not joined.search("bat")
