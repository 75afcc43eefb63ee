"""Time every deterministic guardrail check over 1,000 drafts; prints the figure.

.venv/bin/python bench/bench_checks.py [N]
"""

from __future__ import annotations

import random
import sys
import time

from evals.guardrails import review_draft
from gtm.models import Account, Draft, Fact
from gtm.playbook import load_playbook

BODIES = [
    "Hi {n}, saw the {k} sign-ups from {c} and that you are hiring ML infra engineers. "
    "Open to comparing notes on retrieval?",
    "I hope this message finds you well. Let's leverage our synergy at {c}! Book a demo?",
    "Hi {n}, your post on {c}'s migration off Pinecone was useful. [Company] How did it go?",
    "Hi , quick question about {c}. Are you free? Can we talk? {{first_name}}",
]


def main(n: int = 1000) -> None:
    rng = random.Random(7)
    pb = load_playbook()
    facts = [Fact(id=f"f{i}", text=f"fact {i}", source="bench") for i in range(1, 8)]
    account = Account(account_id="a.ai", company="A", domain="a.ai", open_source_user=True)
    drafts = [
        Draft(
            channel="linkedin",
            step="linkedin_connect",
            body=rng.choice(BODIES).format(n="Dana", k=rng.randint(2, 9), c=f"Co{i}"),
            cited_fact_ids=tuple(rng.sample([f.id for f in facts], rng.randint(0, 3))),
            prompt_version="bench@1",
            model="bench",
        )
        for i in range(n)
    ]
    start = time.perf_counter()
    failed = sum(not review_draft(d, facts, pb, account=account).passed for d in drafts)
    took = time.perf_counter() - start
    print(
        f"scored {n} drafts with every deterministic check in {took:.3f} s "
        f"({took / n * 1e3:.3f} ms/draft); {failed} failed at least one check"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
