"""functions storage beside the event store, in schema `functions`: source bundles
(content-addressed, immutable), logs (console lines and invocation records, per function),
and what the service knows of each project's tenant (from the provisioner's events).

Plain psycopg; each class has an in-memory twin for scenario tests. Imports the standard
library, psycopg and the service's bundle helpers.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Protocol

from psycopg_pool import ConnectionPool

SCHEMA = "functions"

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.bundles (
    sha256 text PRIMARY KEY,
    data bytea NOT NULL,
    size_bytes integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.logs (
    id bigserial PRIMARY KEY,
    ref text NOT NULL,
    slug text NOT NULL,
    at timestamptz NOT NULL,
    level text NOT NULL,
    kind text NOT NULL,
    version integer,
    request_id text,
    status integer,
    duration_ms double precision,
    message text NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_function_at_idx ON {schema}.logs (ref, slug, at DESC);
CREATE TABLE IF NOT EXISTS {schema}.tenants (
    ref text PRIMARY KEY,
    status text NOT NULL,
    db_host text,
    db_port integer,
    db_name text,
    db_user text,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

LEVELS = ("debug", "info", "warn", "error")
LOG_COLUMNS = ("ref", "slug", "at", "level", "kind", "version", "request_id", "status", "duration_ms", "message")


# ---- bundles ---------------------------------------------------------------------------------

class BundleStore(Protocol):
    def put(self, sha256: str, data: bytes) -> None: ...
    def get(self, sha256: str) -> bytes | None: ...


class SqlBundleStore:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def put(self, sha256: str, data: bytes) -> None:
        with self.pool.connection() as conn:
            conn.execute("INSERT INTO functions.bundles (sha256, data, size_bytes) VALUES (%s, %s, %s) "
                         "ON CONFLICT (sha256) DO NOTHING", (sha256, data, len(data)))

    def get(self, sha256: str) -> bytes | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT data FROM functions.bundles WHERE sha256 = %s", (sha256,)).fetchone()
        return bytes(row[0]) if row else None


class MemoryBundleStore:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def put(self, sha256: str, data: bytes) -> None:
        self.data.setdefault(sha256, data)

    def get(self, sha256: str) -> bytes | None:
        return self.data.get(sha256)


# ---- logs ------------------------------------------------------------------------------------

class LogStore(Protocol):
    def append(self, rows: list[dict[str, Any]]) -> None: ...
    def query(self, ref: str, slug: str | None, since: datetime | None, until: datetime | None,
              levels: list[str] | None, kind: str | None, request_id: str | None, limit: int) -> list[dict[str, Any]]: ...


def _row_out(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    at = out["at"]
    out["timestamp"] = int(at.timestamp() * 1000)
    out["at"] = at.astimezone(timezone.utc).isoformat()
    return out


class SqlLogStore:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def append(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        cols = ", ".join(LOG_COLUMNS)
        with self.pool.connection() as conn:
            with conn.cursor() as cur:
                # One set-based statement per flush: a round trip per row would cost more than the rows.
                cur.execute(
                    f"INSERT INTO functions.logs ({cols}) SELECT * FROM unnest("
                    "%s::text[], %s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::int[], %s::text[], "
                    "%s::int[], %s::float8[], %s::text[])",
                    [[r.get(c) for r in rows] for c in LOG_COLUMNS])

    def query(self, ref: str, slug: str | None, since: datetime | None, until: datetime | None,
              levels: list[str] | None, kind: str | None, request_id: str | None, limit: int) -> list[dict[str, Any]]:
        where, args = ["ref = %s"], [ref]
        if slug is not None:  # None: every function of the project
            where.append("slug = %s")
            args.append(slug)
        for cond, value in (("at >= %s", since), ("at < %s", until), ("kind = %s", kind),
                            ("request_id = %s", request_id)):
            if value is not None:
                where.append(cond)
                args.append(value)
        if levels:
            where.append("level = ANY(%s)")
            args.append(levels)
        sql = (f"SELECT {', '.join(LOG_COLUMNS[1:])} FROM functions.logs WHERE {' AND '.join(where)} "
               "ORDER BY at DESC, id DESC LIMIT %s")
        with self.pool.connection() as conn:
            cur = conn.execute(sql, [*args, limit])
            names = [d.name for d in cur.description or []]
            return [_row_out(dict(zip(names, r))) for r in cur.fetchall()]

    def prune(self, older_than: datetime) -> int:
        with self.pool.connection() as conn:
            return conn.execute("DELETE FROM functions.logs WHERE at < %s", (older_than,)).rowcount


class MemoryLogStore:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def append(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self.rows.extend(dict(r) for r in rows)

    def query(self, ref: str, slug: str | None, since: datetime | None, until: datetime | None,
              levels: list[str] | None, kind: str | None, request_id: str | None, limit: int) -> list[dict[str, Any]]:
        out = [r for r in self.rows if r["ref"] == ref and slug in (None, r["slug"])
               and (since is None or r["at"] >= since) and (until is None or r["at"] < until)
               and (not levels or r["level"] in levels) and (kind is None or r["kind"] == kind)
               and (request_id is None or r["request_id"] == request_id)]
        out.sort(key=lambda r: r["at"], reverse=True)
        return [_row_out({c: r.get(c) for c in LOG_COLUMNS[1:]}) for r in out[:limit]]


# ---- tenants (what the provisioner told us) ---------------------------------------------------

class TenantStore(Protocol):
    def apply(self, ref: str, status: str, connection: dict[str, Any] | None, position: int) -> bool: ...
    def get(self, ref: str) -> dict[str, Any] | None: ...


class SqlTenantStore:
    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def apply(self, ref: str, status: str, connection: dict[str, Any] | None, position: int,
              cur: Any = None) -> bool:
        """Record a tenant's state from a provisioner message at `position` in its log; an
        older message than the one applied (a redelivery or a replay) changes nothing."""
        c = connection or {}
        sql = ("INSERT INTO functions.tenants (ref, status, db_host, db_port, db_name, db_user, position) "
               "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (ref) DO UPDATE SET status = EXCLUDED.status, "
               "db_host = COALESCE(EXCLUDED.db_host, functions.tenants.db_host), "
               "db_port = COALESCE(EXCLUDED.db_port, functions.tenants.db_port), "
               "db_name = COALESCE(EXCLUDED.db_name, functions.tenants.db_name), "
               "db_user = COALESCE(EXCLUDED.db_user, functions.tenants.db_user), "
               "position = EXCLUDED.position, updated_at = now() WHERE functions.tenants.position < EXCLUDED.position")
        args = (ref, status, c.get("db_host"), c.get("db_port"), c.get("db_name"), c.get("db_user"), position)
        if cur is not None:
            return bool(cur.execute(sql, args).rowcount)
        with self.pool.connection() as conn:
            return bool(conn.execute(sql, args).rowcount)

    def get(self, ref: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            cur = conn.execute("SELECT ref, status, db_host, db_port, db_name, db_user FROM functions.tenants "
                               "WHERE ref = %s", (ref,))
            row = cur.fetchone()
            return dict(zip([d.name for d in cur.description or []], row)) if row else None


class MemoryTenantStore:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}

    def apply(self, ref: str, status: str, connection: dict[str, Any] | None, position: int,
              cur: Any = None) -> bool:
        old = self.rows.get(ref)
        if old and old["position"] >= position:
            return False
        row = dict(old or {"ref": ref, "db_host": None, "db_port": None, "db_name": None, "db_user": None})
        row.update({k: v for k, v in (connection or {}).items() if k in row})
        row.update(status=status, position=position)
        self.rows[ref] = row
        return True

    def get(self, ref: str) -> dict[str, Any] | None:
        row = self.rows.get(ref)
        return {k: v for k, v in row.items() if k != "position"} if row else None


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def epoch_ms(t: float | None = None) -> int:
    return int((time.time() if t is None else t) * 1000)

