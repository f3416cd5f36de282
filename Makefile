# The two set-up commands of the README: `make demo` (the main job) and `make test` (the whole suite).
# Everything they need is installed here, idempotently: the Python venv, the npm workspace
# (convex/ and the local Convex server), LocalStack in its own venv, and Debian's Chromium.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CHROMIUM := /usr/bin/chromium
# apt-get needs root: CI runs as root; anyone else goes through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
APT := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3

.PHONY: setup demo test bench lint typecheck

setup: $(VENV)/.installed node_modules/.installed localstack/.venv/.installed $(CHROMIUM)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json convex/package.json localconvex/package.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

localstack/.venv/.installed: localstack/install.sh localstack/requirements.txt localstack/constraints.txt
	bash localstack/install.sh
	touch $@

## Debian's Chromium, which tests/test_browser.py drives (through Playwright, never its own browser build).
$(CHROMIUM):
	$(APT) update -qq
	$(APT) install -y -qq chromium

## The main job: an image chat on a local Convex server and a local folder bucket.
demo: $(VENV)/.installed node_modules/.installed
	$(BIN)/convex-offload demo

## The whole test suite, with the checks that keep main clean.
test: setup
	cd convex && ../node_modules/.bin/tsc --noEmit -p .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

## The benchmark suite: every case next to its floor (`--quick` for small sizes).
bench: setup
	$(BIN)/python -m benchmarks

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

typecheck:
	cd convex && ../node_modules/.bin/tsc --noEmit -p .
	$(BIN)/mypy
