# Junction: the whole set-up is `make demo` and `make test` on a fresh machine
# (Python 3.11, make, node/npm, the package registries).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed
# Prefect's ephemeral server takes 15-21 s to start on 2 cores; its default timeout is 20 s.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
export PREFECT_HOME ?= $(CURDIR)/.junction/prefect
export JUNCTION_HOME ?= $(CURDIR)/.junction
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: venv deps system-deps demo test test-fast lint bench clean

venv: $(STAMP)

# Pinned: requirements.lock (uv pip compile of pyproject.toml), installed with uv.
$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(PY) -m pip install -q "uv==0.13.9"
	$(UV) pip install -q --python $(PY) -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@touch $(STAMP)

# Prism (npm, package-lock.json), Alertmanager and Chromium (Debian packages).
system-deps:
	@scripts/install-system-deps.sh

demo: venv
	$(VENV)/bin/junction demo

test: venv system-deps
	mkdir -p $(PREFECT_HOME)
	$(VENV)/bin/pytest -q

test-fast: venv
	$(VENV)/bin/pytest -q -m "not prism and not alertmanager"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy junction integrations analytics flows tasks deployments bench

bench: venv
	$(PY) bench/sweep.py

clean:
	rm -rf $(VENV) node_modules .junction .pytest_cache .mypy_cache .ruff_cache
