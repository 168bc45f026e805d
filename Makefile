# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Each does its own set-up on a fresh clone: virtual environment, the package, npm tools, Kafka jars.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := node_modules/.installed

.PHONY: setup test lint typecheck pytest demo kafka clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(NODE_INSTALLED): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed for the contract validators: apt-get install nodejs npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

setup: $(INSTALLED) $(NODE_INSTALLED)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

demo: $(INSTALLED)
	$(BIN)/escalera demo

kafka: $(INSTALLED)
	$(BIN)/escalera kafka

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
