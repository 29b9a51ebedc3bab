# streamscore: `make demo` runs the pipeline end to end; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help setup native demo test unit e2e chaos lint up down status bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	PYTHON=$(PYTHON) bash infra/setup-system.sh
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip==25.3
	$(BIN)/pip install -q -e ".[dev,online]"
	rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP) ## Install system packages (if root) and the Python venv
	@$(BIN)/streamscore native --current 2>/dev/null || $(MAKE) --no-print-directory native

native: $(STAMP) ## Compile the scoring path with mypyc and Cython again (after editing it; streamscore/native.py)
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/streamscore native

demo: setup ## Stack up, model, job RUNNING, events in, predictions out
	$(BIN)/streamscore demo

test: setup ## Lint, unit tests, rule tests, then end-to-end tests on a real Kafka, Redis, Flink, Prometheus
	bash infra/setup-system.sh --test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest tests -ra

unit: setup ## Unit tests only (no servers)
	$(BIN)/python -m pytest tests/unit -q

e2e: setup ## End-to-end tests only
	$(BIN)/python -m pytest tests/e2e -ra

chaos: setup ## The full chaos suite: TaskManager, broker and Redis kills mid-stream, counted
	STREAMSCORE_CHAOS=full $(BIN)/python -m pytest tests/e2e/test_chaos.py -ra -o log_cli=true --log-cli-level=INFO

lint: setup ## ruff
	$(BIN)/ruff check .

up: setup ## Start the local stack
	$(BIN)/streamscore stack up

down: ## Stop the local stack
	$(BIN)/streamscore stack down

status: ## What runs, with URLs
	$(BIN)/streamscore stack status

bench: setup ## Throughput and latency benchmark on the running stack (see bench/README.md)
	$(BIN)/python bench/run_bench.py

clean: down ## Stop everything and remove the venv, all stack state and the native build
	rm -rf $(VENV) .stack .stack-test .stack-bench build streamscore/_native_manifest.py
	find streamscore -name '*.so' -delete
