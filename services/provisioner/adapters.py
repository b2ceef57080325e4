"""provisioner adapters on PostgreSQL: the saga index (a small table in the provisioner's
schema) and per-saga advisory locks."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

from psycopg_pool import ConnectionPool

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.sagas (
    saga_id uuid PRIMARY KEY,
    operation_id text NOT NULL,
    operation text NOT NULL,
    ref text NOT NULL,
    status text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sagas_running_idx ON {schema}.sagas (opened_at) WHERE status = 'running';
"""


class SqlSagaIndex:
    """Which sagas are unfinished. Not the saga's truth (that is its events): a finding aid,
    written after the saga's first event and after its last, so a crash between the two
    leaves the row 'running' and the reconciler looks at the saga again."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def opened(self, saga_id: uuid.UUID, operation_id: str, operation: str, ref: str) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO provisioner.sagas (saga_id, operation_id, operation, ref, status) "
                "VALUES (%s, %s, %s, %s, 'running') ON CONFLICT (saga_id) DO NOTHING",
                (saga_id, operation_id, operation, ref),
            )

    def finished(self, saga_id: uuid.UUID, status: str) -> None:
        with self.pool.connection() as conn:
            conn.execute("UPDATE provisioner.sagas SET status = %s, updated_at = now() "
                         "WHERE saga_id = %s AND status <> %s", (status, saga_id, status))

    def unfinished(self) -> list[uuid.UUID]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT saga_id FROM provisioner.sagas WHERE status = 'running' "
                                "ORDER BY opened_at").fetchall()
        return [r[0] for r in rows]

    def close(self) -> None:
        self.pool.close()


def lock_key(saga_id: uuid.UUID) -> int:
    """A bigint advisory-lock key from the saga id (its first 64 bits, signed)."""
    return int.from_bytes(saga_id.bytes[:8], "big", signed=True)


class PgSagaLocks:
    """A session-level advisory lock per saga, held on a pooled connection while the saga
    runs. If the runner's process dies, its connection closes and PostgreSQL releases the
    lock, so the saga can be resumed elsewhere; while it lives, nobody else runs the saga."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    @contextmanager
    def hold(self, saga_id: uuid.UUID) -> Iterator[bool]:
        key = lock_key(saga_id)
        with self.pool.connection() as conn:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            got = bool(row and row[0])
            try:
                yield got
            finally:
                if got:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def close(self) -> None:
        self.pool.close()
