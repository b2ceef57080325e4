"""The realtime settings read model: one row per project with the settings in force and its
shutdown count, written in the same transaction as the project's realtime events, with a
`NOTIFY realtime_config` naming the project in that transaction too (delivered on commit).

The realtime server (services/realtime/server/config_feed.py, part of this service) reads
these rows and listens on that channel: a change reaches it as soon as it is committed, with
no second write that could be lost between the store and the notice. In memory (unit tests)
`MemoryConfigViews` holds the same rows.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.types.json import Jsonb

CHANNEL = "realtime_config"

DDL = """
CREATE TABLE IF NOT EXISTS {schema}.project_config (
    ref text PRIMARY KEY,
    org_slug text NOT NULL,
    version integer NOT NULL,
    settings jsonb NOT NULL,
    shutdowns integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

UPSERT = (
    "INSERT INTO realtime.project_config (ref, org_slug, version, settings, shutdowns) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (ref) DO UPDATE SET org_slug = EXCLUDED.org_slug, version = EXCLUDED.version, "
    "settings = EXCLUDED.settings, shutdowns = EXCLUDED.shutdowns, updated_at = now() "
    "WHERE realtime.project_config.version < EXCLUDED.version"
)
NOTIFY = f"SELECT pg_notify('{CHANNEL}', %s)"
SELECT = "SELECT ref, version, settings, shutdowns FROM realtime.project_config WHERE ref = %s"

Row = tuple[str, str, int, dict[str, Any], int]  # ref, org_slug, version, settings, shutdowns


def notice(row: Row) -> str:
    """The NOTIFY payload: which project, at which version, after how many shutdowns (small,
    well under PostgreSQL's 8000-byte limit; the settings themselves are read from the row)."""
    return json.dumps({"ref": row[0], "version": row[2], "shutdowns": row[4]})


def _write(curs: Any, rows: Sequence[Row]) -> None:
    curs.executemany(UPSERT, [(r[0], r[1], r[2], Jsonb(r[3]), r[4]) for r in rows])
    for r in rows:
        curs.execute(NOTIFY, (notice(r),))


class ConfigRecorder(PostgresApplicationRecorder):
    """eventsourcing's recorder, plus the read-model rows and their notices in the events'
    own transaction."""

    def _insert_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        rows: list[Row] = kwargs.get("config_views") or []
        if rows:
            _write(curs, rows)


class SqlConfigViews:
    in_transaction = True  # rows go with the events (ConfigRecorder)

    def __init__(self, datastore: Any):
        self.datastore = datastore

    def apply(self, rows: Iterable[Row]) -> None:
        rows = list(rows)
        if rows:
            with self.datastore.get_connection() as conn:
                _write(conn.cursor(), rows)

    def get(self, ref: str) -> dict[str, Any] | None:
        with self.datastore.get_connection() as conn:
            row = conn.execute(SELECT, (ref,)).fetchone()
        return None if row is None else {"ref": row["ref"], "version": row["version"],
                                         "settings": dict(row["settings"]), "shutdowns": row["shutdowns"]}

    def clear(self) -> None:
        with self.datastore.get_connection() as conn:
            conn.execute("TRUNCATE realtime.project_config")


class MemoryConfigViews:
    in_transaction = False  # applied after each save

    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.notices: list[str] = []

    def apply(self, rows: Iterable[Row]) -> None:
        for r in rows:
            old = self.rows.get(r[0])
            if old is None or old[2] < r[2]:
                self.rows[r[0]] = (r[0], r[1], r[2], json.loads(json.dumps(r[3])), r[4])
                self.notices.append(notice(r))

    def get(self, ref: str) -> dict[str, Any] | None:
        r = self.rows.get(ref)
        return None if r is None else {"ref": r[0], "version": r[2], "settings": dict(r[3]), "shutdowns": r[4]}

    def clear(self) -> None:
        self.rows.clear()
