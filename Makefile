# Junction: the whole set-up is `make demo` and `make test` on a fresh machine
# (Python 3.11, make, node/npm, the package registries).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
# Two pinned sets from one resolution (scripts/lock.sh): requirements.lock is what runs
# (runtime + the sandbox the demo serves); requirements-dev.lock adds tests and linters.
STAMP     := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Prefect's ephemeral server takes 15-21 s to start on 2 cores; its default timeout is 20 s.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
# State: `make demo` (like every `junction` command, from any directory) uses Junction's
# per-user home, JUNCTION_HOME or else $XDG_STATE_HOME/junction or ~/.local/state/junction,
# with Prefect's home below it; the tests keep theirs in the checkout.
test test-fast: export JUNCTION_HOME ?= $(CURDIR)/.junction
test test-fast: export PREFECT_HOME ?= $(CURDIR)/.junction/prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: venv venv-dev deps system-deps demo test test-fast lint lock bench clean serve stop

venv: $(STAMP)
venv-dev: $(DEV_STAMP)

$(UV):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (Python 3.11)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "uv==0.13.9"

# Runtime only: what `make demo` needs.
$(STAMP): requirements.lock pyproject.toml | $(UV)
	$(UV) pip install -q --python $(PY) -r requirements.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@touch $(STAMP)

# Runtime + tests + linters (same versions: both locks come from one resolution).
$(DEV_STAMP): requirements-dev.lock pyproject.toml | $(UV)
	$(UV) pip install -q --python $(PY) -r requirements-dev.lock
	$(UV) pip install -q --python $(PY) --no-deps -e .
	@touch $(STAMP) $(DEV_STAMP)

# Re-pin after changing dependencies in pyproject.toml (keeps every existing pin).
lock: | $(UV)
	UV=$(UV) scripts/lock.sh

# Prism (npm, package-lock.json), Alertmanager and Chromium (Debian packages).
system-deps:
	@scripts/install-system-deps.sh

demo: venv
	$(VENV)/bin/junction demo

# Two worker processes, whole modules each (module fixtures start servers once): most
# tests wait on servers and subprocesses, so two share the 2 cores well.
PYTEST_WORKERS ?= 2

test: venv-dev system-deps
	mkdir -p $(PREFECT_HOME)
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile --durations=25

test-fast: venv-dev
	mkdir -p $(PREFECT_HOME)
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile -m "not prism and not alertmanager"

# Every tool runs even when an earlier one fails, so one run reports everything.
lint: venv-dev
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(VENV)/bin/mypy junction integrations analytics flows tasks deployments bench || status=1; \
	$(VENV)/bin/lint-imports --no-logo || status=1; \
	exit $$status

# Junction on a local Prefect server, left running (deployments/serve.py): the Prefect server
# (state in the per-user home), the work pool with a concurrency limit, every deployment
# (prefect.yaml's and one per workflow spec), a worker and the Junction service; prints the
# addresses. `make serve SANDBOX=1` also runs the built-in sandbox. `make stop` stops them.
PREFECT_PORT ?= 4200
POOL_LIMIT   ?= 4
serve: venv
	$(PY) -m deployments.serve start --prefect-port $(PREFECT_PORT) --pool-limit $(POOL_LIMIT) $(if $(SANDBOX),--sandbox)

stop: venv
	$(PY) -m deployments.serve stop

bench: venv
	$(PY) bench/sweep.py

clean:
	rm -rf $(VENV) node_modules .junction .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
