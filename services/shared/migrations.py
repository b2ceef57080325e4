"""Migrations of the platform's own database (not tenants'): an ordered list, each applied
once in its own transaction and recorded in `platform.migrations`, under an advisory lock so
two starting processes never apply one twice.

`platform-run` applies pending ones at start (after the schemas exist); `platformctl upgrade
check` lists them, `platformctl upgrade migrate` applies them. A migration is forward-only and
must keep the previous release working (add, never drop or rename, in the same release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

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


def _encrypt_auth_secrets(settings: Settings, conn: psycopg.Connection) -> None:
    """Seal the secret auth settings (smtp_pass, external_*_secret, hook secrets, ...) that
    projects' stored events still hold in plaintext: each AuthConfigChanged's `changes` and
    SettingsRestored's `auth`, rewritten in place with the value encrypted as new writes are
    (secretnames.SEALED_PREFIX + the master key's token, bound to the project). Snapshots of
    projects, which would keep the old state, are dropped (they are a cache)."""
    import json

    from .crypto import secret_box
    from .secretnames import SEALED_PREFIX, auth_secret_context, is_secret_name

    if conn.execute("SELECT to_regclass('projects.projects_events')").fetchone()[0] is None:
        return  # no project was ever stored
    box = None
    refs: dict[Any, str] = {}
    for originator, state in conn.execute(
            "SELECT originator_id, state FROM projects.projects_events "
            "WHERE originator_version = 1 AND topic LIKE '%:Project.%'"):  # its creation names the ref
        refs[originator] = json.loads(bytes(state))["ref"]
    rows = conn.execute(
        "SELECT originator_id, originator_version, state FROM projects.projects_events "
        "WHERE topic LIKE '%:Project.AuthConfigChanged' OR topic LIKE '%:Project.SettingsRestored'").fetchall()
    for originator, version, state in rows:
        event = json.loads(bytes(state))
        changed = False
        for field in ("changes", "auth"):
            values = event.get(field)
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                if is_secret_name(key) and isinstance(value, str) and value and not value.startswith(SEALED_PREFIX):
                    box = box or secret_box(settings)
                    values[key] = SEALED_PREFIX + box.encrypt(value, auth_secret_context(refs[originator]))
                    changed = True
        if changed:
            conn.execute("UPDATE projects.projects_events SET state = %s WHERE originator_id = %s "
                         "AND originator_version = %s",
                         (json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode(), originator, version))
    if conn.execute("SELECT to_regclass('projects.projects_snapshots')").fetchone()[0] is not None:
        conn.execute("DELETE FROM projects.projects_snapshots")


MIGRATIONS: tuple[Migration, ...] = (
    Migration("0001_history_snapshots", "snapshot tables for time travel (<service>_snapshots)", _history_snapshots),
    Migration("0002_encrypt_auth_secrets", "secret auth settings of projects encrypted at rest (were plaintext)",
              _encrypt_auth_secrets),
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
