"""orgs adapters: token last-used times in PostgreSQL, projects reached over RPC."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.token_usage (
    token_id uuid PRIMARY KEY,
    last_used_at timestamptz NOT NULL
);
"""


class SqlTokenUsage:
    """Last use of each token. Not an event: it changes on every request, and is written at
    most once a minute per token so authentication stays cheap."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def close(self) -> None:
        self.pool.close()

    def touch(self, token_id: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO orgs.token_usage (token_id, last_used_at) VALUES (%s, now()) "
                "ON CONFLICT (token_id) DO UPDATE SET last_used_at = now() "
                "WHERE orgs.token_usage.last_used_at < now() - interval '60 seconds'",
                (uuid.UUID(token_id),),
            )

    def last_used(self, token_ids: list[str]) -> dict[str, datetime]:
        if not token_ids:
            return {}
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT token_id, last_used_at FROM orgs.token_usage WHERE token_id = ANY(%s)",
                ([uuid.UUID(t) for t in token_ids],),
            ).fetchall()
        return {str(r[0]): r[1] for r in rows}


class ProjectsViaRpc:
    def __init__(self, proxy: Any):
        self.proxy = proxy

    def count_projects(self, org_slug: str) -> int:
        return int(self.proxy.count_projects(org_slug))


class QueuedHasher:
    """argon2id with its work bounded: at most `concurrency` hashes at once per process, each
    in a native thread (eventlet's tpool when the process is monkey-patched, where a C call
    would otherwise stop every green thread), the rest waiting their turn. A flood of
    password attempts then costs a queue, not every RPC worker of the process at once.
    Same interface as argon2.PasswordHasher's hash and verify."""

    def __init__(self, hasher: Any, concurrency: int = 2):
        import threading

        self.hasher = hasher
        self._slots = threading.BoundedSemaphore(max(1, concurrency))  # green when patched
        self._dummy: str | None = None

    def _run(self, fn: Any, *args: Any) -> Any:
        import sys

        with self._slots:
            eventlet = sys.modules.get("eventlet")
            if eventlet is not None and eventlet.patcher.is_monkey_patched("thread"):
                from eventlet import tpool

                return tpool.execute(fn, *args)
            return fn(*args)

    def hash(self, password: str) -> str:
        return str(self._run(self.hasher.hash, password))

    def verify(self, stored: str, password: str) -> bool:
        return bool(self._run(self.hasher.verify, stored, password))

    def dummy_hash(self) -> str:
        """A hash of nothing anyone knows, with the same parameters: verifying against it costs
        what a real check costs, so an unknown email answers as slowly as a known one."""
        if self._dummy is None:
            import secrets

            self._dummy = self.hash(secrets.token_hex(16))
        return self._dummy
