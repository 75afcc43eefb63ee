# Two commands do all the set-up on a fresh machine (Python 3.11 + the package registries):
#   make demo   runs a campaign on the bundled example with the embedded model
#   make test   runs lint, import layers, types, the test suite (with a real browser), the crash
#               harness, then the eval gate
# Both create or update .venv themselves.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test crash crash-pg eval baseline record-baseline gate-demo bench bench-update clean

EVAL := $(BIN)/gtm --data-dir .gtm/eval eval --out .gtm/eval/report --baseline evals/baseline.json
# The model's answers behind evals/baseline.json, recorded by `make record-baseline`. The gate
# replays them: no endpoint, no key, no model started, and a prompt or case change that needs
# answers the cassette does not hold fails the gate and names what changed.
CASSETTE := evals/cassettes/baseline.jsonl

# The web inbox's browser tests drive Debian's Chromium; Playwright downloads no browser.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The mailbox tests start Debian's dovecot on a loopback port with their own configuration.
DOVECOT := /usr/sbin/dovecot

# The Postgres tests start Debian's PostgreSQL server in a temporary cluster on a loopback port.
POSTGRES := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb) /usr/lib/postgresql/15/bin/initdb)

CRASH := $(BIN)/python -m tests.crash.harness --accounts 200 --trials 50 --seed 7

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# A new 3.11 venv ships pip 23.2, which backtracks and fails on this stack: upgrade it first.
# llama-cpp-python (extra `local`) compiles from source once (~6-8 min on 2 cores), then pip caches it.
# GGML_NATIVE=OFF builds for AVX2 rather than for this CPU: a native build on a CPU with AMX
# (some cloud machines) segfaults on the first completion, and the cached wheel would carry it
# to every later venv.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

$(DOVECOT):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd

$(POSTGRES):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql

demo: $(STAMP)
	$(BIN)/gtm --data-dir .gtm/demo run examples/accounts.csv --campaign demo --channel linkedin
	$(BIN)/gtm --data-dir .gtm/demo inbox

test: $(STAMP) $(CHROMIUM) $(DOVECOT) $(POSTGRES)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest
	$(CRASH)
	$(EVAL) --replay $(CASSETTE)

# 50 seeded SIGKILLs over a 200-account campaign: no duplicate send, no lost approval (~5 min).
crash: $(STAMP)
	$(CRASH)

# The same on Postgres: 30 rounds of 3 `gtm run` workers sharing a campaign through leases, each
# killed at random (~9 min; not part of `make test`). Needs Debian's postgresql, as the tests do.
crash-pg: $(STAMP)
	$(BIN)/python -m tests.crash.harness --postgres-workers 3 --accounts 150 --trials 30 --seed 7

# The eval gate alone: checks vs labels, prompts vs the generation set (the recorded answers),
# compared with the baseline.
eval: $(STAMP)
	$(EVAL) --replay $(CASSETTE)

# Record the configured model's answers and accept its figures as the new baseline, then prove
# the pair replays with no model: the embedded model by default, or a hosted one with
#   GTM_MODEL_BASE_URL=https://... GTM_MODEL=... GTM_MODEL_API_KEY=... make record-baseline
# Commit evals/cassettes/baseline.jsonl and evals/baseline.json together.
record-baseline: $(STAMP)
	$(EVAL) --record $(CASSETTE) --update-baseline
	$(EVAL) --replay $(CASSETTE)
	@echo "commit $(CASSETTE) and evals/baseline.json together"

baseline: record-baseline

# Show that the gate bites with the real (embedded) model, live rather than replayed: drop the
# facts from a copy of the prompts and expect `gtm eval` to fail against the baseline.
gate-demo: $(STAMP)
	rm -rf .gtm/gate-demo && mkdir -p .gtm/gate-demo/prompts && cp prompts/*.md .gtm/gate-demo/prompts/
	sed -i -e '/^FACTS:$$/d' -e '/^{facts}$$/d' -e 's/ facts,//' .gtm/gate-demo/prompts/personalize_*.md
	! $(EVAL) --prompts .gtm/gate-demo/prompts --out .gtm/gate-demo/report
	@echo "gate-demo: the degraded prompts failed the gate, as they should"

# The benchmarks (not part of `make test`: timings are noisy), each figure compared with the
# last committed one in bench/figures.json as now/committed; bench-update rewrites that file.
bench: $(STAMP)
	$(BIN)/python bench/run_all.py

bench-update: $(STAMP)
	$(BIN)/python bench/run_all.py --update

clean:
	rm -rf .gtm .pytest_cache .mypy_cache .ruff_cache
