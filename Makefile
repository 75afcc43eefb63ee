# Two commands do all the set-up on a fresh machine (Python 3.11 + the package registries):
#   make demo   runs a campaign on the bundled example with the embedded model
#   make test   runs the test suite
# Both create or update .venv themselves.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint eval clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# A new 3.11 venv ships pip 23.2, which backtracks and fails on this stack: upgrade it first.
# llama-cpp-python (extra `local`) compiles from source once (~6-8 min on 2 cores), then pip caches it.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/gtm --data-dir .gtm/demo run examples/accounts.csv --campaign demo --channel linkedin
	$(BIN)/gtm --data-dir .gtm/demo inbox

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

clean:
	rm -rf .gtm .pytest_cache .mypy_cache .ruff_cache
