PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# A checkout of the pre-admission code, for the noisy-neighbour side by side (made if absent).
BENCH_PRE ?= /tmp/scheduler-pre-admission

.PHONY: run test lint format bench chaos chaos-ci install clean lock lock-check audit

# Installs come from the lock (requirements-dev.txt: pinned, hashes checked), then the
# project itself without resolving anything more.
$(STAMP): requirements-dev.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Regenerate requirements.txt and requirements-dev.txt from setup.cfg (uv, with hashes).
lock: $(STAMP)
	bash scripts/lock.sh

## Fail when the lock is stale against setup.cfg (CI runs it).
lock-check: $(STAMP)
	bash scripts/lock.sh --check

## Known advisories in the locked set (pip-audit; CI runs it).
audit: $(STAMP)
	bash scripts/audit.sh

## Start web, worker and beat (Procfile) with a demo trigger; Ctrl-C stops everything.
run: $(STAMP)
	$(PY) scripts/devstack.py --database scheduler -- bash scripts/local-stack.sh

## Run the whole test suite against real PostgreSQL and Redis (embedded when none is up),
## in TEST_WORKERS processes (pytest-xdist; each its own database, Redis database and
## RabbitMQ virtual host). Much of a test's time is spent waiting on the processes it
## started, so there are twice as many workers as this machine's two cores. `worksteal`:
## a worker that runs out takes tests queued on another, so no worker is left alone with
## a long queue at the end (it was 70 s of the run). Bytecode is written even where
## PYTHONDONTWRITEBYTECODE is set: the rewritten test modules and the app's modules are
## then compiled once, not in every worker and every process a test starts.
## TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4
test: $(STAMP)
	env -u PYTHONDONTWRITEBYTECODE $(PY) scripts/devstack.py -- \
		$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

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
	$(PY) -m chaos $(CHAOS_ARGS)

## The short variant CI runs: under 3 minutes in all, seed 29.
chaos-ci: $(STAMP)
	$(PY) -m chaos --ci $(CHAOS_ARGS)

clean:
	rm -rf $(VENV) .devdata *.egg-info "$${XDG_CACHE_HOME:-$$HOME/.cache}/scheduler-tests"
