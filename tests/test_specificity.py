"""The research-free specificity score: spans found and explained, the formula, no crash on any
Unicode. The examples are written here, not taken from the labeled message set."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evals.messages import LabeledMessage
from evals.specificity import Span, campaign_specificity, specificity
from gtm.domain.playbook import load_playbook

GENERIC = (
    "Hi {{first_name}},\n\n"
    "I hope this email finds you well. I came across your company and was really impressed "
    "by your growth. We help companies like yours increase revenue with our innovative "
    "solutions. Would you be open to a quick 15-minute call? Here is my calendar: "
    "https://calendly.com/joe-sells/30min\n\nBest,\nJoe Parker\nCEO, GrowthCo"
)
PERSONAL = (
    "Hi Ines,\n\n"
    "Your talk at PGConf Lisbon on moving Ledgerly's ledger to logical replication was the "
    "clearest account of a zero-downtime cutover I have read. You mentioned the backfill of "
    "1.2 billion rows took 9 days in March. Saw you're hiring two database engineers too. "
    "What would you do differently with the replication slots?\n\nThanks,\nSam"
)


def _texts(spans: tuple[Span, ...]) -> list[str]:
    return [s.text for s in spans]


def test_a_template_scores_low_and_every_generic_kind_is_explained() -> None:
    s = specificity(GENERIC)
    assert s.score < 0.2
    why = {sp.text: sp.why for sp in s.generic}
    assert why["{{first_name}}"] == "merge-field debris"
    assert why["I hope this email finds you well"] == "playbook banned phrase"
    assert why["help companies like yours"] == "vague value claim"
    assert why["increase revenue"] == "vague value claim"
    assert why["really impressed by your growth"] == "generic praise"
    assert why["https://calendly.com/joe-sells/30min"] == "calendar-link ask"
    assert why["15-minute call"] == "calendar-link ask"
    # The sign-off is the sender's own: neither "Joe Parker" nor "GrowthCo" is evidence.
    assert not any("Joe" in t or "GrowthCo" in t for t in _texts(s.specific))


def test_a_personal_note_scores_high_with_its_names_numbers_and_references() -> None:
    s = specificity(PERSONAL)
    assert s.score > 0.8
    why = {sp.text: sp.why for sp in s.specific}
    assert why["Your talk at"] == "refers to something they made or said"
    assert why["You mentioned"] == "refers to something they did or said"
    assert why["Saw you're hiring"] == "refers to something they did"
    assert why["PGConf Lisbon"] == "names a person, company, product or event"
    assert why["Ledgerly's"] == "names a person, company, product or event"
    assert why["1.2 billion"] == "a concrete number"
    assert why["9 days"] == "a concrete number"
    assert why["March"] == "a date or time reference"
    # The greeting's name is a merge field, and so is the sign-off.
    assert "Ines" not in why and "Sam" not in why
    assert s.generic == ()


def test_spans_point_at_their_text() -> None:
    for text in (GENERIC, PERSONAL):
        s = specificity(text)
        for sp in (*s.specific, *s.generic):
            assert text[sp.start : sp.end] == sp.text
            assert sp.why


def test_the_formula_is_the_documented_one() -> None:
    s = specificity(PERSONAL)
    total_s = sum(sp.weight for sp in s.specific)
    total_g = sum(sp.weight for sp in s.generic)
    assert s.score == pytest.approx(total_s / (total_s + total_g + 1))
    assert specificity("").score == 0.0
    assert specificity("Thanks for reading.").score == 0.0  # no evidence: could go to anyone


def test_a_word_inside_a_generic_span_is_not_also_specific() -> None:
    s = specificity("My name is Tom Baker and we work with Fortune 500 brands.")
    assert _texts(s.specific) == []
    assert {sp.why for sp in s.generic} == {"boilerplate opener", "vague value claim"}


def test_grammar_is_not_a_name() -> None:
    s = specificity("Thanks for the note. Curious how it went. May I ask one thing?")
    assert _texts(s.specific) == []
    s = specificity("On May 3 you shipped it. We met in May.")
    assert "May 3" in _texts(s.specific)


def test_the_playbook_lists_are_used_not_copied() -> None:
    pb = load_playbook()
    custom = pb.model_copy(
        update={
            "guardrails": pb.guardrails.model_copy(
                update={"banned_phrases": (*pb.guardrails.banned_phrases, "hola amigo")}
            )
        }
    )
    assert _texts(specificity("hola amigo, Acme Cloud shipped", custom).generic) == ["hola amigo"]
    assert specificity("hola amigo, Acme Cloud shipped").generic == ()


def test_campaign_specificity_combines_both_scores() -> None:
    assert campaign_specificity(0.8, genericness=0.4) == pytest.approx(0.5 * 0.6 + 0.5 * 0.8)
    assert campaign_specificity(0.8, genericness=0.4, weight=1.0) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="weight"):
        campaign_specificity(0.5, 0.5, weight=1.5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(), st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_no_unicode_crashes_it(a: str, b: str) -> None:
    for text in (a, b, f"Hi {a},\n{b}\nBest,\n{a}"):
        s = specificity(text)
        assert 0.0 <= s.score < 1.0
        for sp in (*s.specific, *s.generic):
            assert text[sp.start : sp.end] == sp.text


def test_auc_is_the_mann_whitney_statistic_and_separation_counts_by_hand() -> None:
    from evals.separation import auc, separation

    # pairs (pos, neg): (0.9>0.2) (0.9>0.5) (0.5=0.5 half) (0.5>0.2) -> 3.5 of 4
    assert auc([0.9, 0.5, 0.2, 0.5], [True, True, False, False]) == 0.875
    assert auc([0.3, 0.4], [True, True]) is None  # one class only
    msgs = [
        LabeledMessage.model_validate(
            {"id": f"m{i}", "source_url": "https://example.org/x", "source_title": "t",
             "retrieved": date(2026, 12, 5), "channel": "email", "label": label,
             "page_verdict": "none", "text": text, "note": "n"}
        )
        for i, (label, text) in enumerate([
            ("personalized", "Hi Maya, your RevOps Summit 2026 talk on retrieval for 40M call "
             "transcripts stuck with me. How did Signalry pick Pinecone?"),
            ("generic", "Hi {{first_name}}, I hope this finds you well. We help companies like "
             "yours increase revenue. Do you have 15 minutes this week?"),
        ])
    ]  # fmt: skip
    s = separation(msgs, threshold=0.5)
    assert (s.n, s.personalized, s.auc) == (2, 1, 1.0)
    assert (s.precision, s.recall) == (1.0, 1.0)
