"""The model's half of reply classification: one structured-output call per reply.

It takes the model as an argument (like `evals.judge`), so the application decides which model
and `gtm eval` can score the embedded one. What the model answers is only a proposal:
`evals.replies.classify` applies the rules first and keeps only quotes found in the reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import ValidationError

from evals.replies import ClassifiedReply, ReplyAnswer, classify, new_text
from gtm.domain.playbook import Playbook
from prompts import load_prompt

__all__ = ["PROMPT", "SIGNAL_MEANINGS", "classify_reply"]

PROMPT = "classify_reply"

SIGNAL_MEANINGS: dict[str, str] = {
    "interested": "wants to learn more or go ahead",
    "meeting_request": "asks for or agrees to a call or meeting, or proposes a time",
    "not_now": "maybe later: bad timing, come back next quarter",
    "not_interested": "declines, no need, not a fit",
    "referral": "points to someone else to talk to",
    "question": "asks us something",
    "out_of_office": "an automatic away, vacation or left-the-company message",
    "product_feedback": "says what they like or dislike about our product",
    "competitor_mentioned": "names a product they use or compare with",
    "opt_out": "asks not to be contacted again, to be removed or unsubscribed",
}


async def classify_reply(
    model: BaseChatModel,
    body: str,
    *,
    headers: Mapping[str, str] | None = None,
    playbook: Playbook | None = None,
    prompts_dir: Path | None = None,
) -> ClassifiedReply:
    """Classify a reply: rules, then the model on the new text only. A reply with no new text
    (only a quoted thread) is not sent to the model; an unusable answer leaves the rules'
    verdict and says why in `model_error`."""
    text = new_text(body)
    if not text:
        return classify(body, headers, None, playbook)
    prompt = load_prompt(PROMPT, prompts_dir)
    system, user = prompt.render(
        signals="\n".join(f"- {k}: {v}" for k, v in SIGNAL_MEANINGS.items()), reply=text
    )
    reader = model.with_structured_output(ReplyAnswer, method="function_calling")
    try:
        raw = await reader.ainvoke([SystemMessage(system), HumanMessage(user)])
        answer = raw if isinstance(raw, ReplyAnswer) else ReplyAnswer.model_validate(raw)
    except (ValidationError, ValueError) as exc:
        return classify(
            body, headers, None, playbook, model_error=f"no usable answer ({type(exc).__name__})"
        )
    return classify(body, headers, answer, playbook)
