# Two commands do all the set-up on a fresh machine (Python 3.11 + the package registries):
#   make demo   runs a campaign on the bundled example with the embedded model
#   make test   runs lint, import layers, types, the test suite (with a real browser), the crash
#               harness, then the eval gate
# Both create or update .venv themselves.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test crash eval baseline gate-demo clean

EVAL := $(BIN)/gtm --data-dir .gtm/eval eval --out .gtm/eval/report --baseline evals/baseline.json

# The web inbox's browser tests drive Debian's Chromium; Playwright downloads no browser.
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The mailbox tests start Debian's dovecot on a loopback port with their own configuration.
DOVECOT := /usr/sbin/dovecot

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

demo: $(STAMP)
	$(BIN)/gtm --data-dir .gtm/demo run examples/accounts.csv --campaign demo --channel linkedin
	$(BIN)/gtm --data-dir .gtm/demo inbox

test: $(STAMP) $(CHROMIUM) $(DOVECOT)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest
	$(CRASH)
	$(EVAL)

# 50 seeded SIGKILLs over a 200-account campaign: no duplicate send, no lost approval (~5 min).
crash: $(STAMP)
	$(CRASH)

# The eval gate alone: checks vs labels, prompts vs the generation set, compared with the baseline.
eval: $(STAMP)
	$(EVAL)

# Accept the current figures as the new baseline (commit evals/baseline.json with the change).
baseline: $(STAMP)
	$(EVAL) --update-baseline

# Show that the gate bites with the real (embedded) model: drop the facts from a copy of the
# prompts and expect `gtm eval` to fail against the baseline.
gate-demo: $(STAMP)
	rm -rf .gtm/gate-demo && mkdir -p .gtm/gate-demo/prompts && cp prompts/*.md .gtm/gate-demo/prompts/
	sed -i -e '/^FACTS:$$/d' -e '/^{facts}$$/d' -e 's/ facts,//' .gtm/gate-demo/prompts/personalize_*.md
	! $(EVAL) --prompts .gtm/gate-demo/prompts --out .gtm/gate-demo/report
	@echo "gate-demo: the degraded prompts failed the gate, as they should"

clean:
	rm -rf .gtm .pytest_cache .mypy_cache .ruff_cache
