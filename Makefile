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

# npm packages the tests drive (the Supabase MCP server), from the lock only.
NPM_STAMP := node_modules/.installed
$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

npm: $(NPM_STAMP)

infra:
	bash scripts/ensure_infra.sh

run: venv infra
	$(VENV)/bin/platform-run

test: venv npm infra
	$(VENV)/bin/python -m pytest

bench: venv infra
	$(VENV)/bin/python bench/broker.py
	$(VENV)/bin/python bench/events.py
	$(VENV)/bin/python bench/functions.py
	$(VENV)/bin/python bench/history.py

lock:
	$(PY) -m venv /tmp/lockvenv && /tmp/lockvenv/bin/pip install -q -r requirements.in && /tmp/lockvenv/bin/pip freeze > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache var
