"""The database service's own tables (schema `database` in the platform database): storage
settings per project with their history, and the project's database log (errors of the SQL
it ran, migrations applied). Plain psycopg, with in-memory twins for scenario tests."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

SCHEMA = "database"
DDL = """
CREATE TABLE IF NOT EXISTS {schema}.storage_config (
    ref text NOT NULL, version int NOT NULL, config jsonb NOT NULL, actor text, at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ref, version));
CREATE TABLE IF NOT EXISTS {schema}.db_log (
    id uuid PRIMARY KEY, ref text NOT NULL, at timestamptz NOT NULL DEFAULT now(), severity text NOT NULL,
    message text NOT NULL, attributes jsonb NOT NULL DEFAULT '{{}}');
CREATE INDEX IF NOT EXISTS db_log_ref_at ON {schema}.db_log (ref, at DESC);
"""


class ConfigStore(Protocol):
    def current(self, ref: str) -> dict[str, Any] | None: ...
    def save(self, ref: str, config: dict[str, Any], actor: str) -> None: ...


class DbLog(Protocol):
    def append(self, ref: str, severity: str, message: str, attributes: dict[str, Any]) -> None: ...
    def recent(self, ref: str, since: datetime | None, until: datetime | None, limit: int) -> list[dict[str, Any]]: ...


class SqlConfigStore:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def current(self, ref: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT config FROM database.storage_config WHERE ref = %s ORDER BY version DESC LIMIT 1",
                               (ref,)).fetchone()
        return dict(row[0]) if row else None

    def save(self, ref: str, config: dict[str, Any], actor: str) -> None:
        with self.pool.connection() as conn:
            # Append-only: each change a new version, so the history stays.
            conn.execute("INSERT INTO database.storage_config (ref, version, config, actor) "
                         "SELECT %s, coalesce(max(version), 0) + 1, %s, %s FROM database.storage_config WHERE ref = %s",
                         (ref, json.dumps(config), actor, ref))


class SqlDbLog:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def append(self, ref: str, severity: str, message: str, attributes: dict[str, Any]) -> None:
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO database.db_log (id, ref, severity, message, attributes) VALUES (%s, %s, %s, %s, %s)",
                         (uuid.uuid4(), ref, severity, message, json.dumps(attributes)))

    def recent(self, ref: str, since: datetime | None, until: datetime | None, limit: int) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, at, severity, message, attributes FROM database.db_log WHERE ref = %s "
                "AND (%s::timestamptz IS NULL OR at >= %s) AND (%s::timestamptz IS NULL OR at < %s) "
                "ORDER BY at DESC LIMIT %s", (ref, since, since, until, until, limit)).fetchall()
        return [{"id": str(r[0]), "at": r[1], "severity": r[2], "message": r[3], "attributes": r[4]} for r in rows]


class MemoryConfigStore:
    def __init__(self) -> None:
        self.versions: dict[str, list[dict[str, Any]]] = {}

    def current(self, ref: str) -> dict[str, Any] | None:
        return dict(self.versions[ref][-1]) if self.versions.get(ref) else None

    def save(self, ref: str, config: dict[str, Any], actor: str) -> None:
        self.versions.setdefault(ref, []).append(dict(config))


class MemoryDbLog:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, ref: str, severity: str, message: str, attributes: dict[str, Any]) -> None:
        with self._lock:
            self.rows.append({"id": str(uuid.uuid4()), "ref": ref, "at": datetime.now(timezone.utc),
                              "severity": severity, "message": message, "attributes": attributes})

    def recent(self, ref: str, since: datetime | None, until: datetime | None, limit: int) -> list[dict[str, Any]]:
        rows = [r for r in self.rows if r["ref"] == ref and (since is None or r["at"] >= since)
                and (until is None or r["at"] < until)]
        return sorted(rows, key=lambda r: r["at"], reverse=True)[:limit]
