"""Root conftest: eventlet's monkey patching and psycopg's cooperative wait must come first,
before anything imports sockets or psycopg, or nameko-based tests hang."""

import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")

import eventlet  # noqa: E402

eventlet.monkey_patch()
