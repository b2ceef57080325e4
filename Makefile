# Two commands: `make run` starts the platform, `make test` runs every test.
# Both build .venv from requirements.lock and make sure PostgreSQL and RabbitMQ run.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test test-stress infra venv npm lock clean bench

$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

# npm packages, from the lock only: PostgREST (each project's REST API), postgres-meta
# (database tools), and what the tests drive (supabase-js, the Supabase MCP server).
NPM_STAMP := node_modules/.installed
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

npm: $(NPM_STAMP)

infra:
	bash scripts/ensure_infra.sh

run: venv npm infra
	$(VENV)/bin/platform-run

# PYTEST_ARGS: a part of the suite or pytest options, e.g. make test PYTEST_ARGS="tests/unit -x".
PYTEST_ARGS ?=

test: venv npm infra
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# The suite with STRESS_CPUS cores kept busy by stress-ng (bounded by STRESS_TIMEOUT seconds, and
# stopped when the suite ends or is interrupted): timing races show up here (docs/testing.md).
STRESS_CPUS ?= 1
STRESS_TIMEOUT ?= 1800

test-stress: venv npm
	bash scripts/ensure_infra.sh --stress
	@stress-ng --cpu $(STRESS_CPUS) --timeout $(STRESS_TIMEOUT)s --quiet & load=$$!; \
	trap 'kill $$load 2>/dev/null; wait $$load 2>/dev/null' EXIT; \
	echo "[stress] stress-ng --cpu $(STRESS_CPUS) (pid $$load, at most $(STRESS_TIMEOUT)s) while the suite runs"; \
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: venv npm infra
	$(VENV)/bin/python bench/broker.py
	$(VENV)/bin/python bench/events.py
	$(VENV)/bin/python bench/functions.py
	$(VENV)/bin/python bench/project_apis.py
	$(VENV)/bin/python bench/history.py

lock:
	$(PY) -m venv /tmp/lockvenv && /tmp/lockvenv/bin/pip install -q -r requirements.in && /tmp/lockvenv/bin/pip freeze > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache var node_modules
