"""The projects read model: one row per project with the view the API answers with, so
reads never rebuild aggregates from their events.

`project_views` is written in the same transaction as the project's events (the recorder
below runs the upserts inside eventsourcing's insert transaction: `save(..., read_model=rows)`),
so it is never behind the store; `platformctl projections rebuild` fills it again from the
events. Listing an organization's projects is one indexed query whatever their number.
In memory (unit tests) `MemoryProjectViews` holds the same rows.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.types.json import Jsonb

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.project_views (
    ref text PRIMARY KEY,
    org_slug text NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    version integer NOT NULL,
    view jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS project_views_org ON {schema}.project_views (org_slug, created_at, ref);
ALTER TABLE {schema}.project_views ADD COLUMN IF NOT EXISTS list_json text;
"""
# list_json: the row as GET /v1/projects lists it (the view without progress and connection),
# as JSON text made when the row is written, so a list of any length is one concatenation.
# Rows from before the column existed have NULL there and are listed from their view.

UPSERT = (
    "INSERT INTO projects.project_views (ref, org_slug, status, created_at, version, view, list_json) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (ref) DO UPDATE SET org_slug = EXCLUDED.org_slug, "
    "status = EXCLUDED.status, version = EXCLUDED.version, view = EXCLUDED.view, list_json = EXCLUDED.list_json "
    "WHERE projects.project_views.version < EXCLUDED.version"
)
LIST_JSON = (
    "SELECT '[' || coalesce(string_agg(coalesce(list_json, (view - 'progress' - 'connection')::text), ',' "
    "ORDER BY created_at, ref), '') || ']' AS body "
    "FROM projects.project_views WHERE org_slug = ANY(%s) AND status <> 'REMOVED'"
)
LISTED_WITHOUT = ("progress", "connection")

Row = tuple[str, str, str, str, int, dict[str, Any]]  # ref, org_slug, status, created_at, version, view


def _params(r: Row) -> tuple[Any, ...]:
    listed = json.dumps({k: v for k, v in r[5].items() if k not in LISTED_WITHOUT}, separators=(",", ":"))
    return (*r[:5], Jsonb(r[5]), listed)


class ReadModelRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, plus the read-model rows in the events' own transaction."""

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        rows: list[Row] = kwargs.get("read_model") or []
        if rows:
            curs.executemany(UPSERT, [_params(r) for r in rows])


class SqlProjectViews:
    """On the event store's own connection pool (eventsourcing's datastore): no more
    connections than the store already holds."""

    in_transaction = True  # rows go with the events (ReadModelRecorder)

    def __init__(self, datastore: Any):
        self.pool = _DatastorePool(datastore)

    def close(self) -> None:
        pass  # the pool is the store's, closed with the application

    def apply(self, rows: Iterable[Row]) -> None:
        rows = list(rows)
        if rows:
            with self.pool.connection() as conn:
                conn.cursor().executemany(UPSERT, [_params(r) for r in rows])

    def get(self, ref: str) -> dict[str, Any] | None:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT view FROM projects.project_views WHERE ref = %s", (ref,)).fetchone()
        return None if row is None else dict(row["view"])

    def list_for_orgs(self, org_slugs: list[str]) -> list[dict[str, Any]]:
        if not org_slugs:
            return []
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT view FROM projects.project_views WHERE org_slug = ANY(%s) AND status <> 'REMOVED' "
                "ORDER BY created_at, ref", (list(org_slugs),)).fetchall()
        return [dict(r["view"]) for r in rows]

    def list_json_for_orgs(self, org_slugs: list[str]) -> str:
        """The same list as list_for_orgs, without progress and connection, as JSON text:
        the rows' list_json joined by PostgreSQL, passed through as it is (no decoding and
        encoding per project, no JSON built per request)."""
        if not org_slugs:
            return "[]"
        with self.pool.connection() as conn:
            row = conn.execute(LIST_JSON, (list(org_slugs),)).fetchone()
        return str(row["body"]) if row else "[]"

    def is_empty(self) -> bool:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM projects.project_views) AS empty").fetchone()
        return bool(row and row["empty"])

    def clear(self) -> None:
        with self.pool.connection() as conn:
            conn.execute("TRUNCATE projects.project_views")


class _DatastorePool:
    def __init__(self, datastore: Any):
        self.datastore = datastore

    def connection(self) -> Any:
        return self.datastore.get_connection()


class MemoryProjectViews:
    in_transaction = False  # applied after each save

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}

    def apply(self, rows: Iterable[Row]) -> None:
        for r in rows:
            old = self.rows.get(r[0])
            if old is None or old[4] < r[4]:
                self.rows[r[0]] = (*r[:5], json.loads(json.dumps(r[5])))  # type: ignore[assignment]

    def get(self, ref: str) -> dict[str, Any] | None:
        r = self.rows.get(ref)
        return None if r is None else json.loads(json.dumps(r[5]))

    def list_for_orgs(self, org_slugs: list[str]) -> list[dict[str, Any]]:
        found = sorted((r for r in self.rows.values() if r[1] in org_slugs and r[2] != "REMOVED"),
                       key=lambda r: (r[3], r[0]))
        return [json.loads(json.dumps(r[5])) for r in found]

    def list_json_for_orgs(self, org_slugs: list[str]) -> str:
        return json.dumps([{k: v for k, v in view.items() if k not in LISTED_WITHOUT}
                           for view in self.list_for_orgs(org_slugs)])

    def clear(self) -> None:
        self.rows.clear()
