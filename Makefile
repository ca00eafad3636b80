PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# A checkout of the pre-admission code, for the noisy-neighbour side by side (made if absent).
BENCH_PRE ?= /tmp/scheduler-pre-admission

.PHONY: run test lint format bench chaos chaos-ci install clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start web, worker and beat (Procfile) with a demo trigger; Ctrl-C stops everything.
run: $(STAMP)
	$(PY) scripts/devstack.py --database scheduler -- bash scripts/local-stack.sh

## Run the whole test suite against real PostgreSQL and Redis (embedded when none is up).
test: $(STAMP)
	$(PY) scripts/devstack.py -- $(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) scripts/devstack.py -- $(PY) -m bench.run_all --pre $(BENCH_PRE)

## Faults across a network namespace per process group (root; issue 29): 20 minutes of load, a
## random seed, report in bench/results/chaos/. Not part of `make test`. CHAOS_ARGS='--seed N'.
chaos: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m chaos $(CHAOS_ARGS)

## The short variant CI runs: under 3 minutes in all, seed 29.
chaos-ci: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m chaos --ci $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .devdata *.egg-info
