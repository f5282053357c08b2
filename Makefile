# SensorGate: two commands on a fresh machine.
#   make up    - the whole local stack with simulated devices and the dashboard
#   make test  - the test suite (unit + integration against real mosquitto and influxd)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up test lint typecheck bootstrap system-packages clean

up: bootstrap
	$(VENV)/bin/sensorgate up

test: bootstrap
	$(PY) -m pytest $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bootstrap: system-packages $(STAMP)

system-packages:
	@bash scripts/bootstrap-system.sh

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python >= 3.11 (Debian: apt-get install python3 python3-venv)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "error: cannot create a virtualenv; on Debian run: apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
