"""Migrations of the platform's own database (not tenants'): an ordered list, each applied
once in its own transaction and recorded in `platform.migrations`, under an advisory lock so
two starting processes never apply one twice.

`platform-run` applies pending ones at start (after the schemas exist); `platformctl upgrade
check` lists them, `platformctl upgrade migrate` applies them. A migration is forward-only and
must keep the previous release working (add, never drop or rename, in the same release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import psycopg

from .db import connect, ensure_schema
from .settings import Settings

SCHEMA = "platform"
LOCK_KEY = 0x5F17_0001  # pg_advisory_xact_lock key for applying migrations


@dataclass(frozen=True)
class Migration:
    id: str
    description: str
    apply: Callable[[Settings, psycopg.Connection], None]


def _history_snapshots(settings: Settings, conn: psycopg.Connection) -> None:
    # eventsourcing's snapshot table per store whose aggregates `history` reads (same DDL
    # as its recorder's: opening the store with snapshotting creates it).
    from .history import KINDS, open_history

    for producer in sorted({k.producer for k in KINDS.values()}):
        with open_history(producer, settings):
            pass


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_history_snapshots", "snapshot tables for time travel (<service>_snapshots)", _history_snapshots),
)


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(f'CREATE TABLE IF NOT EXISTS "{SCHEMA}".migrations (id text PRIMARY KEY, description text NOT NULL, '
                 "applied_at timestamptz NOT NULL DEFAULT now())")


def applied(settings: Settings) -> list[str]:
    ensure_schema(settings, SCHEMA)
    with connect(settings, autocommit=True) as conn:
        _ensure_table(conn)
        return [r[0] for r in conn.execute(f'SELECT id FROM "{SCHEMA}".migrations ORDER BY id').fetchall()]


def pending(settings: Settings, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[Migration]:
    done = set(applied(settings))
    return [m for m in migrations if m.id not in done]


def migrate(settings: Settings, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Apply every pending migration in order; returns the ids applied now."""
    ensure_schema(settings, SCHEMA)
    done: list[str] = []
    for m in migrations:
        with connect(settings) as conn, conn.transaction():
            _ensure_table(conn)
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            if conn.execute(f'SELECT 1 FROM "{SCHEMA}".migrations WHERE id = %s', (m.id,)).fetchone():
                continue
            m.apply(settings, conn)
            conn.execute(f'INSERT INTO "{SCHEMA}".migrations (id, description) VALUES (%s, %s)', (m.id, m.description))
            done.append(m.id)
    return done
