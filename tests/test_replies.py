"""Reply classification: the new text, the deterministic opt-out, quoted evidence, the labeled set
and its place in `gtm eval`."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from evals.datasets import DEFAULT_DATASETS, DatasetError, load_datasets
from evals.replies import (
    Evidence,
    ReplyAnswer,
    classify,
    new_text,
    opt_out,
    out_of_office,
    unquoted_text,
    verified,
)
from evals.reply_classifier import SIGNAL_MEANINGS, classify_reply
from evals.reply_scores import (
    OPT_OUT_RECALL,
    replies_markdown,
    reply_floor_breaches,
    reply_metrics,
    score_replies,
)
from gtm.domain.events import REPLY_SIGNALS
from gtm.domain.playbook import Playbook, load_playbook
from tests.support.cli import run_gtm
from tests.support.fake_model import ScriptedChatModel, tool_call
from tests.support.openai_server import ScriptedOpenAIServer, tool_call_response

PB = load_playbook()
REPLIES = DEFAULT_DATASETS / "replies"

THREADS = {
    "en-on-wrote": (
        "Sounds good, Tuesday works.\n\nBest,\nAnna\n\n"
        "On Tue, Mar 3, 2026 at 10:02 AM Ben Ortiz <ben@x.example> wrote:\n"
        "> Hi Anna, would a call work?\n> To unsubscribe reply STOP\n"
    ),
    "en-gt-only": "Sounds good, Tuesday works.\n\n> Hi Anna\n> would a call work?\n",
    "outlook": (
        "Sounds good, Tuesday works.\n\nFrom: Ben Ortiz <ben@x.example>\n"
        "Sent: Tuesday, March 3, 2026 10:02 AM\nTo: Anna\nSubject: a call\n\nunsubscribe here\n"
    ),
    "outlook-underscores": (
        "Sounds good, Tuesday works.\n________________________________\n"
        "From: Ben\nSent: Monday\nTo: Anna\nSubject: y\n\nold text"
    ),
    "de-am-schrieb": (
        "Sounds good, Tuesday works.\n\nMit freundlichen Grüßen\nJonas\n\n"
        "Am Di., 3. März 2026 um 10:02 Uhr schrieb Ben Ortiz <ben@x.example>:\n> Hallo\n"
    ),
    "de-outlook": (
        "Sounds good, Tuesday works.\n\nVon: Ben Ortiz <ben@x.example>\n"
        "Gesendet: Dienstag, 3. März 2026 10:02\nAn: Jonas\nBetreff: Frage\n\nHallo"
    ),
    "fr-a-ecrit": (
        "Sounds good, Tuesday works.\n\n"
        "Le mar. 3 mars 2026 à 10:02, Ben Ortiz <ben@x.example> a écrit :\n> Bonjour\n"
    ),
    "es-escribio": (
        "Sounds good, Tuesday works.\n\n"
        "El mar, 3 mar 2026 a las 10:02, Ben Ortiz (<ben@x.example>) escribió:\n> Hola\n"
    ),
    "nl-schreef": "Sounds good, Tuesday works.\n\nOp di 3 mrt 2026 om 10:02 schreef Ben:\n> Hoi\n",
}


@pytest.mark.parametrize("name", sorted(THREADS))
def test_new_text_drops_the_quoted_thread_in_every_client_and_language(name: str) -> None:
    assert new_text(THREADS[name]) == "Sounds good, Tuesday works."


def test_a_reply_that_is_only_a_quoted_thread_has_no_new_text() -> None:
    body = "On Tue, Mar 3, 2026 at 10:02 AM Ben <ben@x.example> wrote:\n> Hi\n> reply STOP\n"
    assert new_text(body) == ""
    assert unquoted_text(body) == ""
    assert classify(body, None, None, PB).signals == ()


def test_a_signature_cut_never_eats_the_message() -> None:
    # The parser treats a line starting "Thanks," as a signature; this one is the message.
    body = "Hi Ben,\nThanks, but please remove me from your list.\n\nBest,\nJo"
    assert "remove me" in new_text(body)
    assert new_text("Interested.\n\nBest,\nAnna") == "Interested."
    assert new_text("Interested.\n-- \nMia Chen\nCTO, Acme") == "Interested."


@pytest.mark.parametrize(
    "text",
    [
        "Please remove me from your mailing list.",
        "unsubscribe",
        "STOP\n\nSent from my iPhone",
        "Stop emailing me.",
        "Please don’t contact us again.",  # curly apostrophe
        "We have a vendor. Please remove\nme from whatever list this is.",  # wrapped line
        "Thanks for connecting, but no more messages please.",
        "Oh great, another AI email. Leave me alone.",
        "Kein Interesse. Bitte nehmen Sie mich aus Ihrem Verteiler.",
        "Bitte keine weiteren E-Mails.",
        "Kontaktieren Sie mich bitte nicht mehr.",
        "Danke, aber bitte tragen Sie mich aus.",
        "Merci de ne plus me contacter.",
        "Bonjour, je souhaite me désinscrire de vos envois.",
        "Por favor, denme de baja de su lista.",
        "No me vuelvan a escribir, gracias.",
        "Cancellatemi dalla vostra lista, grazie.",
        "Hi Ben,\n\nThanks for the note. We use Postgres and pgvector, which is fine at our scale,"
        " and the team is small.\n\nI'd also ask that you take me off your list for these.\n\n"
        "All the best,\nKim",  # buried in a long friendly reply
    ],
)
def test_opt_out_rules_catch_plain_buried_and_multilingual_requests(text: str) -> None:
    assert opt_out(text, None, PB)
    got = classify(text, None, ReplyAnswer(signals=["interested"]), PB)
    assert "opt_out" in got.signals and got.opt_out_by == "rule"


@pytest.mark.parametrize(
    "text",
    [
        "Our indexing jobs stop at around 40M vectors. Solved that?",
        "How did you get my email address?",
        "Not interested, thanks.",
    ],
)
def test_opt_out_rules_leave_other_replies_alone(text: str) -> None:
    assert opt_out(text, None, PB) is None


def test_the_subject_counts_and_our_own_quoted_footer_does_not() -> None:
    assert opt_out("(sent from the link)", {"subject": "Re: unsubscribe"}, PB) == "unsubscribe"
    body = (
        "Yes, interested.\n\nOn Tue, Mar 3, 2026 at 10:02 AM Ben <ben@x.example> wrote:\n"
        "> If you'd rather not hear from me, reply unsubscribe and I'll remove you.\n"
    )
    assert classify(body, None, None, PB).signals == ()


def test_a_playbook_without_opt_out_phrases_still_gets_the_shipped_ones() -> None:
    data = json.loads(PB.as_json())
    del data["escalations"]["opt_out_phrases"]  # a file written before the field existed
    old = Playbook.model_validate(data)
    assert old.escalations.opt_out_patterns == ()
    assert opt_out("please unsubscribe me", None, old) == "unsubscribe"


def test_out_of_office_comes_from_headers() -> None:
    assert out_of_office({"auto-submitted": "auto-replied"}) == "Auto-Submitted: auto-replied"
    assert out_of_office({"X-Autoreply": "yes"}) == "X-Autoreply: yes"
    assert out_of_office({"Subject": "Abwesenheitsnotiz: Ihre Suche"})
    assert out_of_office({"Auto-Submitted": "auto-generated"}) is None  # not a reply
    assert out_of_office({"X-Auto-Response-Suppress": "All"}) is None  # asks, does not mark
    assert out_of_office(None) is None
    got = classify("Back Monday.", {"Auto-Submitted": "auto-replied"}, None, PB)
    assert got.signals == ("out_of_office",)
    assert got.evidence[0].source == "header"


def test_invented_quotes_are_dropped_with_their_signal() -> None:
    body = "We're on Pinecone today. What would be different?\n\n> quoted: we'd love a demo"
    answer = ReplyAnswer(
        signals=["competitor_mentioned", "question", "interested", "meeting_request"],
        evidence=[
            Evidence(signal="competitor_mentioned", quote="we’re ON pinecone   today"),
            Evidence(signal="question", quote="What would be different?"),
            Evidence(signal="interested", quote="we would love to learn more"),  # invented
            Evidence(signal="interested", quote="we'd love a demo"),  # only in the quote
        ],
    )
    got = classify(body, None, answer, PB)
    assert got.signals == ("question", "competitor_mentioned")
    assert {e.source for e in got.evidence} == {"model"}
    dropped = {(d.signal, d.quote) for d in got.dropped}
    assert ("interested", "we would love to learn more") in dropped
    assert ("interested", "we'd love a demo") in dropped
    assert ("meeting_request", "") in dropped  # claimed with no quote at all
    assert got.opt_out_by is None


def test_verified_quote_needs_real_words() -> None:
    assert verified("Pinecone", "We use pinecone.")
    assert not verified("ok", "ok, sure")
    assert not verified("...", "...")
    assert not verified("we use Weaviate", "We use pinecone.")


def test_a_model_only_opt_out_is_kept_and_marked_for_a_person() -> None:
    body = "I'd prefer to hear nothing further from your company."
    answer = ReplyAnswer(
        signals=["opt_out"], evidence=[Evidence(signal="opt_out", quote="hear nothing further")]
    )
    assert opt_out(body, None, PB) is None
    got = classify(body, None, answer, PB)
    assert got.signals == ("opt_out",) and got.opt_out_by == "model"


def test_every_signal_has_a_meaning_for_the_prompt() -> None:
    assert set(SIGNAL_MEANINGS) == set(REPLY_SIGNALS)


async def test_classify_reply_sends_only_the_new_text_and_checks_quotes() -> None:
    body = (
        "Talk to Sam, our CTO. And please stop emailing me.\n\n"
        "On Tue, Mar 3, 2026 at 10:02 AM Ben <ben@x.example> wrote:\n> Hi Anna, SECRET-THREAD\n"
    )
    model = ScriptedChatModel.from_script(
        [
            tool_call(
                "ReplyAnswer",
                {
                    "signals": ["referral", "interested"],
                    "evidence": [
                        {"signal": "referral", "quote": "Talk to Sam, our CTO"},
                        {"signal": "interested", "quote": "sounds great"},
                    ],
                },
            )
        ]
    )
    got = await classify_reply(model, body, playbook=PB)
    model.assert_complete()
    sent = "\n".join(str(m.content) for m in model.calls[0])
    assert "Talk to Sam" in sent and "SECRET-THREAD" not in sent
    assert got.signals == ("referral", "opt_out")
    assert got.opt_out_by == "rule"
    assert [d.quote for d in got.dropped] == ["sounds great"]


async def test_classify_reply_skips_the_model_for_a_quoted_only_reply() -> None:
    model = ScriptedChatModel.from_script([])
    got = await classify_reply(model, "> only the thread\n> unsubscribe\n", playbook=PB)
    model.assert_complete()
    assert got.signals == () and got.text == ""


async def test_an_unusable_answer_leaves_the_rules_verdict() -> None:
    model = ScriptedChatModel.from_script([tool_call("ReplyAnswer", {"signals": ["not-a-signal"]})])
    got = await classify_reply(model, "Please unsubscribe me.", playbook=PB)
    model.assert_complete()
    assert got.signals == ("opt_out",)
    assert got.model_error and "no usable answer" in got.model_error


def test_the_labeled_reply_set_loads_and_covers_what_the_issue_asks() -> None:
    ds = load_datasets([REPLIES])
    assert len(ds.replies) >= 60
    assert len({c.id for c in ds.replies}) == len(ds.replies)
    counts = Counter(s for c in ds.replies for s in c.expected)
    assert set(counts) == set(REPLY_SIGNALS)
    assert {"de", "fr", "es"} <= {c.language for c in ds.replies}
    categories = Counter(c.category for c in ds.replies)
    for needed in ("buried-opt-out", "mixed", "quoted-thread", "sarcasm", "auto-reply"):
        assert categories[needed] >= 2, needed
    assert sum(len(c.expected) > 1 for c in ds.replies) >= 10
    # The shipped datasets still load whole, the drafts as before.
    whole = load_datasets()
    assert whole.replies == ds.replies and len(whole.labeled) > 0 and len(whole.generation) > 0


def test_the_rules_catch_every_labeled_opt_out() -> None:
    scored = score_replies(load_datasets([REPLIES]).replies, PB)
    m = reply_metrics(scored)
    assert m[OPT_OUT_RECALL] == 1.0
    assert not any(k.startswith("replies.") for k in m)  # no model ran
    assert reply_floor_breaches(m) == []
    assert reply_floor_breaches({OPT_OUT_RECALL: 0.95}) == [(OPT_OUT_RECALL, 1.0, 0.95)]


def test_a_bad_reply_case_is_reported_with_file_and_case(tmp_path: Path) -> None:
    bad = tmp_path / "r.yaml"
    bad.write_text(
        "replies:\n  - id: r1\n    category: x\n    body: hi\n    expected: [excited]\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"r\.yaml: r1: expected"):
        load_datasets([bad])


def test_metrics_of_the_full_classifier_per_signal() -> None:
    ds = load_datasets([REPLIES])
    cases = [c for c in ds.replies if c.id in {"reply-optout-remove", "reply-referral-cto"}]
    answers = {
        "reply-optout-remove": ReplyAnswer(),
        "reply-referral-cto": ReplyAnswer(
            signals=["referral", "question"],
            evidence=[
                Evidence(signal="referral", quote="Talk to Sam"),
                Evidence(signal="question", quote="made up"),
            ],
        ),
    }
    classified = {c.id: classify(c.body, c.headers, answers[c.id], PB) for c in cases}
    scored = score_replies(cases, PB, classified)
    m = reply_metrics(scored)
    assert m["replies.recall.opt_out"] == 1.0
    assert m["replies.precision.referral"] == 1.0
    assert "replies.precision.question" not in m  # never predicted once the quote was dropped
    assert m["replies.exact_match"] == 1.0
    assert m["replies.quotes_verified"] == 0.5
    text = "\n".join(replies_markdown(scored, m))
    assert "## Reply classification" in text and "| referral | 1.00 | 1.00 |" in text


def _gtm(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_gtm(env, *args, timeout=300)


def _answer_with_first_sentence(request: dict[str, Any]) -> dict[str, Any]:
    """A deterministic classifier: calls every reply a question, quoting its first sentence."""
    reply = request["messages"][-1]["content"].split("REPLY:\n", 1)[1]
    first = re.split(r"(?<=[.?!])\s", reply.strip(), maxsplit=1)[0]
    args = {"signals": ["question"], "evidence": [{"signal": "question", "quote": first}]}
    return tool_call_response(request["tool_choice"]["function"]["name"], args)


@pytest.fixture
def env(tmp_path: Path) -> Any:
    with ScriptedOpenAIServer(responder=_answer_with_first_sentence) as srv:
        e = {k: v for k, v in os.environ.items() if not k.startswith("GTM_")}
        e.update(
            GTM_MODEL_BASE_URL=srv.base_url,
            GTM_MODEL="scripted",
            GTM_DATA_DIR=str(tmp_path / "data"),
            ANONYMIZED_TELEMETRY="False",
        )
        yield e


@pytest.mark.timeout(300)
def test_gtm_eval_reports_reply_metrics_and_a_missed_opt_out_fails(
    tmp_path: Path, env: dict[str, str]
) -> None:
    res = _gtm("eval", "--dataset", str(REPLIES), "--out", str(tmp_path / "r"), env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "r" / "report.json").read_text(encoding="utf-8"))
    assert report["metrics"][OPT_OUT_RECALL] == 1.0
    assert report["metrics"]["replies.recall.question"] > 0
    assert len(report["replies"]) >= 60
    assert "## Reply classification" in (tmp_path / "r" / "report.md").read_text("utf-8")

    missed = tmp_path / "missed.yaml"
    missed.write_text(
        "replies:\n  - id: r-missed\n    category: hard\n"
        "    body: I'd prefer to hear nothing further from your company.\n"
        "    expected: [opt_out]\n",
        encoding="utf-8",
    )
    res = _gtm("eval", "--dataset", str(missed), "--no-generate", "--out", str(tmp_path), env=env)
    assert res.returncode == 1
    assert OPT_OUT_RECALL in res.stderr
