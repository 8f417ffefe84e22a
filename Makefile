# message-events: every command a developer or CI needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
STAMP := $(VENV)/.installed

.PHONY: help install run test lint format typecheck pytest schemas docs clean deploy-check bench chaos

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create the virtualenv and install the package with dev tools

# Local-only credentials for `make run`; a deployment takes them from a Secret.
CALLBACK_USERNAME ?= local
CALLBACK_PASSWORD ?= local-secret

run: $(STAMP)  ## ingress and all processors in one process (embedded broker unless KAFKA_BOOTSTRAP_SERVERS)
	CALLBACK_USERNAME='$(CALLBACK_USERNAME)' CALLBACK_PASSWORD='$(CALLBACK_PASSWORD)' \
		$(BIN)/message-events run --port $(PORT)

lint: $(STAMP)  ## ruff format check and lint
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)  ## apply ruff's formatting and safe fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)  ## mypy, strict
	$(BIN)/mypy message_events ingest processors schemas tests deploy

schemas: $(STAMP)  ## regenerate the JSON Schemas, AsyncAPI and OpenAPI documents
	$(BIN)/python -m schemas
	$(BIN)/python -m ingest.openapi

docs: $(STAMP)  ## regenerate the README's settings and topics tables
	$(BIN)/python -m message_events.docs

pytest: $(STAMP)  ## the test suite alone
	$(BIN)/pytest

deploy-check: $(STAMP)  ## render the deploy/ overlays and validate them (Kubernetes and CRD schemas)
	$(BIN)/python -m deploy.check

test: lint typecheck pytest deploy-check  ## everything CI runs

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)  ## issue 4's benchmark on the embedded broker (about 5 min); results in bench/results/
	$(BIN)/python -m bench

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

chaos: $(STAMP)  ## every fault scenario under continuous load (a few minutes); last line is JSON, exit 1 on loss or duplicates
	$(BIN)/python -m chaos
