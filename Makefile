# Two commands: `make run` starts the platform, `make test` runs every test.
# Both build .venv from requirements.lock and make sure PostgreSQL and RabbitMQ run.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test infra venv npm lock clean bench

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

test: venv npm infra
	$(VENV)/bin/python -m pytest

bench: venv npm infra
	$(VENV)/bin/python bench/broker.py
	$(VENV)/bin/python bench/events.py
	$(VENV)/bin/python bench/functions.py
	$(VENV)/bin/python bench/project_apis.py

lock:
	$(PY) -m venv /tmp/lockvenv && /tmp/lockvenv/bin/pip install -q -r requirements.in && /tmp/lockvenv/bin/pip freeze > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache var node_modules
