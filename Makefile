# reel-reconciler: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit integration lint venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,operator]'
	touch $(STAMP)

venv: $(STAMP)

## Start both emulators, seed the seed's cases, run the CLI, print before/after.
demo: $(STAMP)
	$(BIN)/python -m tests.support.demo

lint: $(STAMP)
	$(BIN)/ruff check controller tests bench
	$(BIN)/mypy

## The whole suite: lint, type check, unit and integration tests against real emulators.
test: lint
	$(BIN)/pytest -ra

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/pytest tests/integration -ra

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
