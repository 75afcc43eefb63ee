"""Score N drafts (default 1,000) with every deterministic check, as one batch; print the time.

The batch check embeds every draft with the offline MiniLM model and compares all pairs, so the
figure includes embedding time. The LLM judge is off.

.venv/bin/python bench/bench_checks.py [N]
"""

from __future__ import annotations

import json
import random
import sys
import time

from evals.context import CheckContext
from evals.harness import BatchItem, score_batch
from gtm.domain.models import Account, Contact, Draft, Fact
from gtm.domain.playbook import load_playbook
from memory.embedding import MiniLMEmbedding

OPENERS = ["Hi {n},", "{n} —", "Hello {n},", "{n},"]
MIDDLES = [
    "saw {k} sign-ups from {c} this month and that you are hiring ML infra engineers.",
    "your post on {c}'s move off Pinecone was useful; retrieval latency came up {k} times.",
    "congrats on the Series A at {c}. The on-prem launch for banks looked hard to ship.",
    "I hope this message finds you well. Let's leverage our synergy at {c}!",
    "quick question about {c} [Company] and the {k} engineers in Berlin.",
]
ASKS = ["Open to comparing notes?", "How did the migration go?", "Are you free? Can we talk?", ""]
NAMES = ["Dana", "Priya", "Marcus", "Aisha", "Tom", "Grace", "Hugo", "Lea", "Ravi", "Elena"]


def main(n: int = 1000) -> None:
    rng = random.Random(7)
    pb = load_playbook()
    items = []
    for i in range(n):
        name, company, k = rng.choice(NAMES), f"Co{i}", rng.randint(2, 40)
        facts = [
            Fact(id="f1", text=f"{k} sign-ups from {company} in the last 30 days.", source="b"),
            Fact(id="f2", text=f"{company} is hiring ML infra engineers in Berlin.", source="b"),
            Fact(
                id="f3", text=f"{company} blog: retrieval latency and Pinecone costs.", source="b"
            ),
        ]
        body = " ".join(
            [
                rng.choice(OPENERS).format(n=name),
                rng.choice(MIDDLES).format(c=company, k=k),
                rng.choice(ASKS),
            ]
        )
        ctx = CheckContext(
            facts=facts,
            playbook=pb,
            account=Account(
                account_id=f"co{i}.ai", company=company, domain=f"co{i}.ai", open_source_user=True
            ),
            contact=Contact(name=f"{name} Lee", title="VP Engineering"),
            sender_name="Alex Morgan",
            sender_company="Vectorly",
        )
        draft = Draft(
            channel="linkedin",
            step="linkedin_connect",
            body=body,
            cited_fact_ids=tuple(rng.sample(["f1", "f2", "f3"], rng.randint(0, 3))),
            prompt_version="bench@1",
            model="bench",
        )
        items.append(BatchItem(f"d{i}", draft, ctx))
    embedder = MiniLMEmbedding()
    embedder.embed(["warm up"])  # model load is a one-off, not per-draft cost
    start = time.perf_counter()
    reviews, batch = score_batch(items, pb, embedder.embed)
    took = time.perf_counter() - start
    failed = sum(not r.passed for r in reviews)
    print(
        f"scored {n} drafts with every deterministic check (judge off) in {took:.2f} s "
        f"({took / n * 1e3:.2f} ms/draft, embeddings and all {n * (n - 1) // 2} pairs included); "
        f"{failed} failed at least one check; largest shared skeleton "
        f"{len(batch['largest_skeleton'])} drafts, batch {'passes' if batch['passed'] else 'fails'}"
    )
    print("BENCH " + json.dumps({"bench": "checks", "drafts": n, "score_batch_s": took}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
