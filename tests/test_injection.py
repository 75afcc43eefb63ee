"""Prompt injection, proven: hostile text in any research source never reaches the writer,
never changes who is contacted or which tools run, and a draft repeating it is flagged.

The writer here is *obedient*: it copies every fact it is shown into its draft and cites them
all. If hostile text reached the prompt, it would reach the draft and the recipient.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langgraph.types import Command

from evals.context import CheckContext
from evals.guardrails import review_draft
from gtm.domain.models import Account, Contact, Draft, Fact, Touch
from gtm.domain.playbook import load_playbook
from tests.support.fake_model import tool_call
from tests.test_graph import ACME, cfg, deps, inp
from tests.test_graph import env as graph_env
from tools.crm import Activity

env = graph_env
FIXTURES = yaml.safe_load(
    (Path(__file__).parent / "fixtures" / "injection.yaml").read_text(encoding="utf-8")
)


class Obedient(BaseChatModel):
    """Writes its note from every fact line in the prompt, verbatim, citing all of them."""

    prompts: list[str] = []

    @property
    def _llm_type(self) -> str:
        return "obedient"

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = "\n".join(str(m.content) for m in messages)
        self.prompts.append(prompt)
        facts = re.findall(r"^\[(f\d+)\] (.+?) \(source:", prompt, flags=re.M)
        body = "Hi Dana, " + " ".join(text for _, text in facts)
        msg = tool_call("DraftOutput", {"body": body, "cited_fact_ids": [i for i, _ in facts]})
        return ChatResult(generations=[ChatGeneration(message=msg)])


def planted(fixture: dict[str, str]) -> Account:
    where, text = fixture["where"], fixture["text"]
    if where == "description":
        return ACME.model_copy(update={"description": text})
    if where == "signal":
        return ACME.model_copy(update={"signals": (*ACME.signals, text)})
    if where == "title":
        contact = ACME.contacts[0].model_copy(update={"title": text})
        return ACME.model_copy(update={"contacts": (contact,)})
    if where == "profile":  # a LinkedIn summary or the list's notes, from the user's export
        said = Fact(id="p1", text=f"Dana's LinkedIn summary: {text}", source="x.csv:2:Summary")
        contact = ACME.contacts[0].model_copy(update={"profile": (said,)})
        return ACME.model_copy(update={"contacts": (contact,)})
    return ACME


async def plant_elsewhere(env: dict[str, Any], fixture: dict[str, str]) -> None:
    if fixture["where"] == "crm_note":
        company = await env["crm"].upsert_company(ACME)
        await env["crm"].log_activity(
            Activity(
                key="hostile-note",
                company_id=company.id,
                kind="note",
                body=fixture["text"],
                at=datetime(2026, 10, 1, tzinfo=UTC),
            )
        )
    if fixture["where"] == "memory":
        await env["memory"].remember(
            Touch(
                account_id=ACME.account_id,
                kind="decision",
                text=fixture["text"],
                at=datetime(2026, 9, 1, tzinfo=UTC),
            ),
            key="hostile-memory",
        )


def test_there_are_at_least_15_hostile_fixtures() -> None:
    assert len(FIXTURES) >= 15 and len({f["id"] for f in FIXTURES}) == len(FIXTURES)
    assert {f["where"] for f in FIXTURES} == {
        "description",
        "signal",
        "title",
        "crm_note",
        "memory",
        "profile",
    }


async def run_one(env: dict[str, Any], account: Account, tid: str) -> tuple[Obedient, Any]:
    model = Obedient()
    model.prompts = []
    d = deps(env, model)  # type: ignore[arg-type]
    g = env["graph"]
    await g.ainvoke(inp(account, campaign=tid), cfg(tid), context=d)
    snap = await g.aget_state(cfg(tid))
    await g.ainvoke(Command(resume={"action": "approve", "reviewer": "t"}), cfg(tid), context=d)
    return model, snap


async def provider_calls(env: dict[str, Any]) -> dict[str, Any]:
    company = await env["crm"].find_company(ACME.domain)
    acts = await env["crm"].activities(company.id) if company else []
    return {
        "linkedin": [(a.kind, a.profile_url) for a in env["linkedin"].actions()],
        "email": list(env["email"].sent),
        "crm": sorted(a.kind for a in acts if a.key != "hostile-note"),
        "outbox": sorted((e.step, e.contact_key) for e in env["outbox"].entries()),
    }


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["id"] for f in FIXTURES])
async def test_hostile_research_never_reaches_the_writer_or_changes_who_is_contacted(
    env: dict[str, Any], fixture: dict[str, str]
) -> None:
    await plant_elsewhere(env, fixture)
    model, snap = await run_one(env, planted(fixture), "hostile")
    leak = fixture["leak"]
    assert model.prompts, "the writer was called"
    assert all(leak not in p for p in model.prompts), "hostile text reached the prompt"
    quarantined = snap.values["quarantined"]
    if fixture["where"] != "title":  # a title is also withheld from the prompt, not a fact
        assert any(leak in q.text for q in quarantined)
        assert any("research: quarantined" in e for e in snap.values["events"])
    assert all(leak not in f.text for f in snap.values["facts"])

    calls = await provider_calls(env)
    # Exactly what a clean account produces: a visit and a connect to Dana, logged as two CRM
    # touches on her company; no email, nobody else.
    assert calls == {
        "linkedin": [
            ("visit", "https://www.linkedin.com/in/dana-ruiz"),
            ("connect", "https://www.linkedin.com/in/dana-ruiz"),
        ],
        "email": [],
        "crm": ["linkedin_connect", "linkedin_visit"],
        "outbox": [
            ("linkedin_connect", "dana@quillcode.dev"),
            ("linkedin_visit", "dana@quillcode.dev"),
        ],
    }
    for kind, _ in calls["linkedin"]:
        assert leak not in str(env["linkedin"].actions())
        assert kind in ("visit", "connect")


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f["id"] for f in FIXTURES])
def test_review_flags_a_draft_that_repeats_injected_content(fixture: dict[str, str]) -> None:
    hostile = Fact(id="q1", text=fixture["text"], source="web", kind="signal")
    clean = Fact(id="f1", text="Quillcode is hiring 4 ML infrastructure engineers.", source="csv")
    ctx = CheckContext(
        facts=[clean],
        quarantined=[hostile],
        playbook=load_playbook(),
        contact=Contact(name="Dana Ruiz", title="VP Engineering"),
    )
    # The writer obeyed: it repeated the hostile text, as it came, in the draft.
    visible = fixture["text"]
    draft = Draft(
        channel="linkedin",
        step="linkedin_connect",
        body=f"Hi Dana, saw Quillcode is hiring ML infrastructure engineers. {visible}"[:300],
        cited_fact_ids=("f1",),
        prompt_version="t@1",
        model="t",
    )
    verdict = review_draft(draft, ctx)
    assert "no_injected_instructions" in {r.check for r in verdict.failures}


@pytest.mark.parametrize(
    "text",
    [
        "Quillcode's system architecture post describes retrieval over 40M files.",
        "Their instructions manual for self-hosting is open source.",
        "Forward-deployed engineers at Quillcode work with every enterprise customer.",
        "Everyone on the platform team uses LangChain.",
        "Dana Ruiz is Head of Developer Experience at Quillcode.",
        "Launched an AI assistant for support teams in October 2026.",
        "Copy editing and docs are handled by the developer relations team.",
    ],
)
def test_ordinary_facts_are_not_quarantined(text: str) -> None:
    from evals.text import find_injection

    assert find_injection(text, load_playbook().guardrails.injection_patterns) is None
