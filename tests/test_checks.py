"""Each guardrail check on its own: it passes clean drafts and quotes what it rejects."""

from __future__ import annotations

import pytest

from evals import checks
from evals.guardrails import review_draft, revision_instructions
from gtm.models import Account, Draft, Fact, Step
from gtm.playbook import load_playbook

PB = load_playbook()
FACTS = [Fact(id=f"f{i}", text=f"fact {i}", source="test") for i in range(1, 5)]
CLEAN = (
    "Hi Dana, saw the 3 sign-ups from Quillcode and that you are hiring ML infra "
    "engineers. Open to comparing notes on retrieval?"
)
OSS = Account(account_id="a.ai", company="A", domain="a.ai", open_source_user=True)


def draft(
    body: str = CLEAN,
    cited: tuple[str, ...] = ("f1", "f2"),
    step: Step = "linkedin_connect",
    subject: str | None = None,
) -> Draft:
    channel = "email" if step == "email" else "linkedin"
    return Draft(
        channel=channel,
        step=step,
        subject=subject,
        body=body,
        cited_fact_ids=cited,
        prompt_version="p@1",
        model="m",
    )


def test_clean_draft_passes_everything() -> None:
    verdict = review_draft(draft(), FACTS, PB, account=OSS)
    assert verdict.passed, verdict.failures
    assert revision_instructions(verdict) == ""


@pytest.mark.parametrize(("cited", "quoted"), [(("f1",), "1 real"), (("f1", "f9"), "“f9”")])
def test_fact_coverage(cited: tuple[str, ...], quoted: str) -> None:
    r = checks.fact_coverage(draft(cited=cited), FACTS, PB)
    assert not r.passed and quoted in r.finding and "f1, f2, f3, f4" in r.instruction


@pytest.mark.parametrize(
    "debris",
    [
        "{first_name}",
        "{{ company }}",
        "[Company]",
        "[Your Name]",
        "<NAME>",
        "%FIRSTNAME%",
        "[f2]",
        "lorem ipsum",
    ],
)
def test_placeholders_are_quoted(debris: str) -> None:
    r = checks.placeholders(draft(f"{CLEAN} {debris}"), FACTS, PB)
    assert not r.passed and f"“{debris}”" in r.finding


def test_empty_greeting_and_normal_brackets() -> None:
    assert not checks.placeholders(draft("Hi , saw your post. Open to a chat?"), FACTS, PB).passed
    assert checks.placeholders(draft(CLEAN + " (2024) [beta]"), FACTS, PB).passed


def test_length_uses_the_playbook_limit() -> None:
    long = draft("word " * 70 + "ok?")
    assert not checks.length(long, FACTS, PB).passed
    free = PB.model_copy(
        update={"channels": PB.channels.model_copy(update={"linkedin_note_max_chars": 100})}
    )
    assert checks.length(draft(), FACTS, PB).passed
    r = checks.length(draft(), FACTS, free)
    assert not r.passed and "limit 100" in r.finding
    assert not checks.length(draft(""), FACTS, PB).passed


def test_email_subject_and_body_limits() -> None:
    ok = draft(CLEAN, step="email", subject="Retrieval at Quillcode")
    assert checks.length(ok, FACTS, PB).passed
    assert "no subject" in checks.length(draft(CLEAN, step="email"), FACTS, PB).finding
    long_subject = draft(CLEAN, step="email", subject="x" * 100)
    assert "subject is 100" in checks.length(long_subject, FACTS, PB).finding
    wordy = draft("word " * 200 + "ok?", step="email", subject="s")
    assert "words" in checks.length(wordy, FACTS, PB).finding


def test_banned_phrases_case_and_word_boundaries() -> None:
    r = checks.banned_phrases(draft("I HOPE THIS EMAIL FINDS YOU WELL. " + CLEAN), FACTS, PB)
    assert not r.passed and "“I HOPE THIS EMAIL FINDS YOU WELL”" in r.finding
    assert checks.banned_phrases(draft(CLEAN + " We leveraged ours."), FACTS, PB).passed
    assert not checks.banned_phrases(draft(CLEAN + " A game-changer."), FACTS, PB).passed


def test_exactly_one_ask() -> None:
    assert not checks.single_ask(draft("Saw your post about retrieval."), FACTS, PB).passed
    two = checks.single_ask(draft("Open to a chat? Or should I ask Theo?"), FACTS, PB)
    assert not two.passed and "2 asks" in two.finding
    assert checks.single_ask(draft("Saw your talk. Let me know if useful."), FACTS, PB).passed


def test_urgency_and_pitch_to_open_source_users() -> None:
    assert not checks.no_urgency(draft(CLEAN + " Act now, limited time."), FACTS, PB).passed
    pitch = draft("Our platform helps teams like yours. Book a demo?")
    r = checks.no_pitch_to_open_source(pitch, FACTS, PB, account=OSS)
    assert not r.passed and "“book a demo”" in r.finding.lower()
    # Only a first touch to an open-source user is held to it.
    assert checks.no_pitch_to_open_source(pitch, FACTS, PB, account=None).passed
    follow_up = draft(pitch.body, step="linkedin_message")
    assert checks.no_pitch_to_open_source(follow_up, FACTS, PB, account=OSS).passed
