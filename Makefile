# The two commands a fresh Debian machine needs are `make demo` and `make test`;
# both install what they need first (system packages, then the .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: all setup system-deps demo test test-fast lint faults tamper bench bench-smoke clean

all: test

system-deps:
	@sh scripts/ensure-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: system-deps $(STAMP)

demo: setup
	$(BIN)/exchanged demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -q

# One attack per case against two live daemons (issue: security incidents). Its last
# line is "tamper: N cases, N detected, 0 delivered"; the suite is also part of make test.
tamper: setup
	$(BIN)/python -m exchanged.tamper_main

# Crash and network-fault injection against two live daemons (issue: durable delivery).
# Its last line is "faults: K kills, N messages, L lost, D duplicated"; a short run is
# part of the test suite.
faults: setup
	$(BIN)/python -m exchanged.faults_main

# Performance against the gpg+sftp script baselines (issue: benchmarks). Not a CI gate;
# its last line is one JSON object with the figures. bench-smoke runs it at tiny sizes
# and is part of the test suite, so the harness cannot rot.
bench: setup
	$(BIN)/python bench/run.py

bench-smoke: setup
	$(BIN)/python bench/run.py --smoke

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not integration and not slow"

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
