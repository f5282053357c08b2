# SensorGate: two commands on a fresh machine.
#   make up    - the whole local stack with simulated devices and the dashboard
#   make test  - the test suite (unit + integration against real mosquitto and influxd)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: up test lint typecheck bootstrap system-packages clean edge-arm-check

up: bootstrap
	$(VENV)/bin/sensorgate up

# Two workers, a test file each at a time: most integration tests wait on brokers,
# databases and child processes, so two files in flight halve the wall time on two
# cores. Each worker starts its own mosquitto and influxd. TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 2
test: bootstrap
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The edge agent installed and run in an ARM Debian userland under qemu (as root; the
# first run builds and caches the rootfs). Not part of `test`: see docs/edge.md,
# "Proven on ARM". E.g. make edge-arm-check EDGE_ARM_ARGS="--arch all --json"
EDGE_ARM_ARGS ?=
edge-arm-check: $(STAMP)
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || bash scripts/bootstrap-system.sh
	$(PY) scripts/edge_arm_check.py $(EDGE_ARM_ARGS)

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
