# Two commands do all set-up on a fresh machine: `make demo` and `make test` (see README.md).
# Each creates/updates .venv and node_modules as needed; Azurite and the sandbox are started
# (on free loopback ports) and stopped by the Python code that needs them.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: demo test unit clock debian lint typecheck pytest bench iac clean

$(PY_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "==> installing Python dependencies into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	@echo "==> installing Azurite and adaptivecards from the npm registry"
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# faketime (the clock tier) and chromium (the browser tests): Debian's packages, installed when missing.
debian:
	@bash scripts/install-debian-packages.sh faketime chromium

demo: $(PY_STAMP) $(NODE_STAMP)
	@$(VENV)/bin/licensing-audit demo

lint: $(PY_STAMP)
	@echo "==> ruff"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .

typecheck: $(PY_STAMP)
	@echo "==> mypy licensing/"
	@$(VENV)/bin/mypy

# The whole suite in random order (pytest-randomly prints its seed: PYTEST_ARGS=--randomly-seed=N repeats an
# order, PYTEST_ARGS="-p no:randomly" keeps the file order). Under CI=true a missing Chromium fails the browser tests.
# Two workers (pytest-xdist), each with its own Azurite; PYTEST_ARGS="-n 0" runs in one process.
pytest: $(PY_STAMP) $(NODE_STAMP) debian
	@echo "==> pytest (random order, 2 workers)"
	@$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# The fast tiers again under a shifted wall clock: a test that depends on today's date fails here. Only the wall
# clock moves: a faked monotonic clock makes Python's timed lock waits (sem_clockwait) never return.
export FAKETIME_DONT_FAKE_MONOTONIC := 1
FAST_TIERS := tests/unit tests/conformance -q -m "not azurite and not slow and not chromium" \
	--ignore=tests/unit/test_infra.py
# Two workers here too (the workers inherit faketime's preload and the variable above): 30 s a tier instead of 48.
clock: $(PY_STAMP) debian
	@echo "==> unit + conformance under faketime '+400 days'"
	@faketime '+400 days' $(PY) -m pytest -n 2 $(FAST_TIERS) $(PYTEST_ARGS)
	@echo "==> unit + conformance under faketime '2031-02-28 12:00:00'"
	@faketime '2031-02-28 12:00:00' $(PY) -m pytest -n 2 $(FAST_TIERS) $(PYTEST_ARGS)

test: lint typecheck pytest clock

# The inner loop: unit and conformance tests, no Azurite, no browser, no Bicep toolchain (about 15 s).
unit: $(PY_STAMP)
	@$(PY) -m pytest $(FAST_TIERS) $(PYTEST_ARGS)

iac: $(PY_STAMP)
	@echo "==> Bicep parse + checkov (infra/)"
	@$(PY) -m pytest tests/unit/test_infra.py -q

bench: $(PY_STAMP) $(NODE_STAMP)
	@$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules demo-output .pytest_cache .mypy_cache .ruff_cache
