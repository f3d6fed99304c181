# The verbs a user types. `make demo` and `make test` work on a fresh machine:
# both install what they need first, into the project's own virtual
# environment (.venv): nothing outside the checkout and the user's caches
# changes. BASE_PYTHON picks the interpreter that creates it (3.11+).
BASE_PYTHON ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
PIP := $(PYTHON) -m pip
STAMP := .make/installed
# -rs: the reason of every skipped test in the summary.
PYTEST := $(PYTHON) -m pytest -q -rs

.PHONY: install test test-unit check lint typecheck layering golden docs demo bench \
        cluster-up cluster-down e2e e2e-local e2e-kind images clean

install: $(STAMP)

$(PYTHON):
	$(BASE_PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PYTHON)
	@echo "make: installing the project and its test tools into $(VENV)"
	$(PIP) install --quiet --disable-pip-version-check -e '.[sidecar,test,dev]'
	@mkdir -p .make && touch $(STAMP)

## test: the whole suite: unit, golden, real-process integration, and the e2e
## suite against a local control plane (built on first use, cached in ~/.cache).
test: install
	$(PYTEST) tests
	$(MAKE) --no-print-directory e2e-local

## test-unit: everything that needs no API server (and so no real Vault).
test-unit: install
	$(PYTEST) -m "not real_vault" tests

check: install lint typecheck layering

lint: install
	$(PYTHON) -m ruff check contract injector sidecar tests e2e bench demo
	$(PYTHON) -m ruff format --check contract injector sidecar tests e2e bench demo

typecheck: install
	$(PYTHON) -m mypy

## layering: the import contracts of pyproject.toml [tool.importlinter], transitively.
layering: install
	$(VENV)/bin/lint-imports --no-cache

## docs: regenerate the README's annotation table and docs/runtime.md's
## variable tables from the contract's rows (contract/).
docs: install
	$(PYTHON) -m tests.docs_tool regenerate

## golden: regenerate tests/golden/*.injected.yaml from tests/golden/*.yaml.
golden: install
	$(PYTHON) -m tests.golden_tool regenerate

## demo: start the webhook with a self-signed certificate and send it pods
## (DEMO_ARGS=--keep leaves it running and prints how to call it).
demo: install
	$(PYTHON) -m demo $(DEMO_ARGS)

bench: install
	$(PYTHON) -m bench

cluster-up: install
	$(PYTHON) -m e2e.cluster up

cluster-down: install
	$(PYTHON) -m e2e.cluster down

## e2e-local: start a local cluster (as root: control plane + a real node in its
## own namespaces), run e2e/ against it (e2e/suite.py), stop it.
e2e-local: install
	$(PYTHON) -m e2e.cluster run -- $(PYTHON) -m e2e.suite -rs

## e2e: the e2e suite against whatever cluster KUBECONFIG names.
e2e: install
	$(PYTEST) e2e

e2e-kind: install
	PYTHON=$(PYTHON) ./e2e/kind.sh

images:
	./images/build.sh

clean:
	rm -rf .make build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache
