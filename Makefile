# The two commands of the README: `make demo` (the main job) and `make test` (every test).
# Each does its own set-up on a fresh clone: virtual environment, the package, npm tools, Kafka jars.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := node_modules/.installed
# Prometheus' own tools, for the tests: promtool checks the configuration, the alert rules and a live worker's
# /metrics; prometheus scrapes a live worker and answers the dashboard's queries. Both from PATH if there, else
# from Debian's package `prometheus`, unpacked into .tools/ (no system install, no root needed).
PROMTOOL := .tools/promtool
PROMETHEUS := .tools/prometheus

.PHONY: setup test unit integration e2e lint typecheck pytest faults demo kafka clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	@echo "setting up $(VENV): Escalera and its Python dependencies (faust-streaming, kafka-python, pydantic, rich, ...; about a minute, once)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --quiet --progress-bar off -e '.[dev]'
	@touch $@
	@echo "$(VENV) is ready: \`source $(VENV)/bin/activate\` puts the \`escalera\` command on your PATH"

$(NODE_INSTALLED): package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm (Node.js 18+) is needed for the contract validators: apt-get install nodejs npm"; exit 1; }
	@echo "installing the npm contract validators (AsyncAPI, JSON Schema) into node_modules (for the tests; about 30 s, once)"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(PROMTOOL) $(PROMETHEUS) &:
	@mkdir -p .tools
	@if command -v promtool >/dev/null && command -v prometheus >/dev/null; then \
	  ln -sf "$$(command -v promtool)" $(PROMTOOL) && ln -sf "$$(command -v prometheus)" $(PROMETHEUS); \
	else \
	  command -v apt-get >/dev/null || { echo "promtool and prometheus are needed: install them (Debian/Ubuntu package prometheus) or put them on PATH"; exit 1; }; \
	  rm -rf .tools/deb && mkdir -p .tools/deb && \
	  ( cd .tools/deb && apt-get download prometheus >/dev/null 2>download.log ) \
	    || { cat .tools/deb/download.log; echo "could not fetch Debian's package prometheus: install it, or run apt-get update"; exit 1; }; \
	  dpkg-deb -x .tools/deb/prometheus_*.deb .tools/deb/root && \
	  mv .tools/deb/root/usr/bin/promtool $(PROMTOOL) && mv .tools/deb/root/usr/bin/prometheus $(PROMETHEUS) && rm -rf .tools/deb; \
	fi
	@$(PROMTOOL) --version | head -n 1

setup: $(INSTALLED) $(NODE_INSTALLED) $(PROMTOOL) $(PROMETHEUS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

pytest: setup
	$(BIN)/pytest

test: lint typecheck pytest

# One tier at a time (each test's tier is its folder, see tests/conftest.py): `make unit` needs no broker and runs in
# seconds; integration and e2e start a real local Kafka.
unit: $(INSTALLED)
	$(BIN)/pytest -q -m unit

integration: setup
	$(BIN)/pytest -q -m integration

e2e: setup
	$(BIN)/pytest -q -m e2e

# The fault tests alone (they run in `make test` too), their figures appended to reliability.jsonl (RELIABILITY.md).
faults: setup
	RELIABILITY_REPORT=$${RELIABILITY_REPORT:-reliability.jsonl} $(BIN)/pytest -s tests/reliability

demo: $(INSTALLED)
	$(BIN)/escalera demo

kafka: $(INSTALLED)
	$(BIN)/escalera kafka

clean:
	rm -rf $(VENV) node_modules .tools .pytest_cache .mypy_cache .ruff_cache
