"""Root conftest: eventlet's monkey patching and psycopg's cooperative wait must come first,
before anything imports sockets or psycopg, or nameko-based tests hang."""

import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import eventlet  # noqa: E402

eventlet.monkey_patch()

# Plugins that import ssl or sockets load only now, after the patching (pyproject's addopts
# turns off their auto-loading): the fuzz (tests/integration/test_fuzz.py) needs schemathesis's.
pytest_plugins = ["schemathesis.pytest.plugin"]
