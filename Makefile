# Two commands: `make run` starts the platform, `make test` runs every test.
# Both build .venv from requirements.lock and make sure PostgreSQL and RabbitMQ run.
PY ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test infra venv lock clean bench

$(STAMP): requirements.lock pyproject.toml
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.lock
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

infra:
	bash scripts/ensure_infra.sh

run: venv infra
	$(VENV)/bin/platform-run

test: venv infra
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
