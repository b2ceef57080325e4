"""The database service's own tables (schema `database` in the platform database): storage
settings per project with their history, and the project's logs (`db_log`: per source, the
errors of the SQL it ran and migrations applied, and the project edge's request, auth and
storage records), kept `project_log_retention_h`. Plain psycopg, with in-memory twins for
scenario tests."""

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
ALTER TABLE {schema}.db_log ADD COLUMN IF NOT EXISTS source text NOT NULL DEFAULT 'postgres_logs';
CREATE INDEX IF NOT EXISTS db_log_ref_source_at ON {schema}.db_log (ref, source, at DESC);
CREATE INDEX IF NOT EXISTS db_log_at ON {schema}.db_log (at);
CREATE TABLE IF NOT EXISTS {schema}.snippets (
    id uuid PRIMARY KEY, ref text NOT NULL, user_id text NOT NULL, name text NOT NULL, sql text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX IF NOT EXISTS snippets_owner ON {schema}.snippets (ref, user_id);
"""


class ConfigStore(Protocol):
    def current(self, ref: str) -> dict[str, Any] | None: ...
    def save(self, ref: str, config: dict[str, Any], actor: str) -> None: ...


class DbLog(Protocol):
    def append(self, ref: str, severity: str, message: str, attributes: dict[str, Any]) -> None: ...
    def append_many(self, records: list[dict[str, Any]]) -> int: ...
    def purge(self, before: datetime) -> int: ...
    def recent(self, ref: str, since: datetime | None, until: datetime | None, limit: int,
               sources: list[str] | None = None) -> list[dict[str, Any]]: ...


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

    def append_many(self, records: list[dict[str, Any]]) -> int:
        """records: {ref, source, at (epoch seconds), severity, message, attributes}; one transaction."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO database.db_log (id, ref, source, at, severity, message, attributes) "
                            "VALUES (%s, %s, %s, to_timestamp(%s), %s, %s, %s)",
                            [(uuid.uuid4(), r["ref"], r["source"], r["at"], r["severity"], r["message"],
                              json.dumps(r["attributes"])) for r in records])
        return len(records)

    def purge(self, before: datetime) -> int:
        with self.pool.connection() as conn:
            return conn.execute("DELETE FROM database.db_log WHERE at < %s", (before,)).rowcount

    def recent(self, ref: str, since: datetime | None, until: datetime | None, limit: int,
               sources: list[str] | None = None) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, at, severity, message, attributes, source FROM database.db_log WHERE ref = %s "
                "AND source = ANY(%s) "
                "AND (%s::timestamptz IS NULL OR at >= %s) AND (%s::timestamptz IS NULL OR at < %s) "
                "ORDER BY at DESC LIMIT %s",
                (ref, sources or ["postgres_logs"], since, since, until, until, limit)).fetchall()
        return [{"id": str(r[0]), "at": r[1], "severity": r[2], "message": r[3], "attributes": r[4], "source": r[5]}
                for r in rows]


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
                              "severity": severity, "message": message, "attributes": attributes,
                              "source": "postgres_logs"})

    def append_many(self, records: list[dict[str, Any]]) -> int:
        with self._lock:
            for r in records:
                self.rows.append({"id": str(uuid.uuid4()), "ref": r["ref"], "source": r["source"],
                                  "at": datetime.fromtimestamp(r["at"], timezone.utc), "severity": r["severity"],
                                  "message": r["message"], "attributes": r["attributes"]})
        return len(records)

    def purge(self, before: datetime) -> int:
        with self._lock:
            kept = [r for r in self.rows if r["at"] >= before]
            gone, self.rows = len(self.rows) - len(kept), kept
        return gone

    def recent(self, ref: str, since: datetime | None, until: datetime | None, limit: int,
               sources: list[str] | None = None) -> list[dict[str, Any]]:
        wanted = sources or ["postgres_logs"]
        rows = [r for r in self.rows if r["ref"] == ref and r["source"] in wanted and (since is None or r["at"] >= since)
                and (until is None or r["at"] < until)]
        return sorted(rows, key=lambda r: r["at"], reverse=True)[:limit]


class SnippetStore(Protocol):
    def list(self, ref: str, user_id: str) -> list[dict[str, Any]]: ...
    def save(self, ref: str, user_id: str, snippet_id: str | None, name: str, sql: str) -> dict[str, Any] | None: ...
    def delete(self, ref: str, user_id: str, snippet_id: str) -> bool: ...


class SqlSnippetStore:
    """Saved SQL snippets, each its author's own (every query names the user)."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def list(self, ref: str, user_id: str) -> list[dict[str, Any]]:
        with self.pool.connection() as conn:
            rows = conn.execute("SELECT id, name, sql, updated_at FROM database.snippets WHERE ref = %s AND user_id = %s "
                                "ORDER BY updated_at DESC", (ref, user_id)).fetchall()
        return [{"id": str(r[0]), "name": r[1], "sql": r[2], "updated_at": r[3].isoformat()} for r in rows]

    def save(self, ref: str, user_id: str, snippet_id: str | None, name: str, sql: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            if snippet_id is None:
                row = conn.execute("INSERT INTO database.snippets (id, ref, user_id, name, sql) VALUES (%s, %s, %s, %s, %s) "
                                   "RETURNING id, name, sql, updated_at", (uuid.uuid4(), ref, user_id, name, sql)).fetchone()
            else:
                row = conn.execute("UPDATE database.snippets SET name = %s, sql = %s, updated_at = now() "
                                   "WHERE id = %s AND ref = %s AND user_id = %s RETURNING id, name, sql, updated_at",
                                   (name, sql, snippet_id, ref, user_id)).fetchone()
        return {"id": str(row[0]), "name": row[1], "sql": row[2], "updated_at": row[3].isoformat()} if row else None

    def delete(self, ref: str, user_id: str, snippet_id: str) -> bool:
        with self.pool.connection() as conn:
            return conn.execute("DELETE FROM database.snippets WHERE id = %s AND ref = %s AND user_id = %s",
                                (snippet_id, ref, user_id)).rowcount > 0


class MemorySnippetStore:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def list(self, ref: str, user_id: str) -> list[dict[str, Any]]:
        mine = [r for r in self.rows.values() if r["ref"] == ref and r["user_id"] == user_id]
        return [{k: r[k] for k in ("id", "name", "sql", "updated_at")} for r in sorted(mine, key=lambda r: r["updated_at"], reverse=True)]

    def save(self, ref: str, user_id: str, snippet_id: str | None, name: str, sql: str) -> dict[str, Any] | None:
        if snippet_id is not None and (snippet_id not in self.rows or self.rows[snippet_id]["user_id"] != user_id
                                       or self.rows[snippet_id]["ref"] != ref):
            return None
        sid = snippet_id or str(uuid.uuid4())
        self.rows[sid] = {"id": sid, "ref": ref, "user_id": user_id, "name": name, "sql": sql,
                          "updated_at": datetime.now(timezone.utc).isoformat()}
        return {k: self.rows[sid][k] for k in ("id", "name", "sql", "updated_at")}

    def delete(self, ref: str, user_id: str, snippet_id: str) -> bool:
        r = self.rows.get(snippet_id)
        if r is None or r["user_id"] != user_id or r["ref"] != ref:
            return False
        del self.rows[snippet_id]
        return True
