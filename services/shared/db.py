"""PostgreSQL plumbing: create the platform database and each service's schema and tables.

Plain psycopg. Each service owns one schema named after it; plumbing tables (relay position,
processed messages) live in the schema of the service that uses them.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from .settings import SERVICES, Settings

PLUMBING_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.relay_position (
    relay text PRIMARY KEY,
    position bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.processed_messages (
    consumer text NOT NULL,
    event_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
"""


def connect(settings: Settings, *, autocommit: bool = False, dbname: str | None = None,
            application_name: str | None = None) -> psycopg.Connection:
    # A named connection shows in pg_stat_activity: `platformctl status` finds the relay so.
    extra = {"application_name": application_name} if application_name else {}
    return psycopg.connect(settings.conninfo_for(dbname or settings.db_name), autocommit=autocommit, **extra)


def ensure_database(settings: Settings) -> None:
    with connect(settings, autocommit=True, dbname="postgres") as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.db_name,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.db_name)))
            except psycopg.errors.DuplicateDatabase:
                pass


def drop_database(settings: Settings) -> None:
    with connect(settings, autocommit=True, dbname="postgres") as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(settings.db_name))
        )


def ensure_schema(settings: Settings, schema: str, extra_ddl: str = "") -> None:
    with connect(settings, autocommit=True) as conn:
        # Concurrent processes may race to create the same schema; the lock serialises them.
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"schema:{schema}",))
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
            ddl = PLUMBING_DDL + extra_ddl
            conn.execute(sql.SQL(ddl).format(schema=sql.Identifier(schema)))  # type: ignore[arg-type]


def bootstrap(settings: Settings) -> None:
    """Create the database and every service schema; safe to run again."""
    ensure_database(settings)
    for service in SERVICES:
        ensure_schema(settings, service)


def make_pool(settings: Settings, schema: str, ddl: str = "", max_size: int = 8) -> ConnectionPool:
    """An open autocommit connection pool on the platform database, after making sure the
    schema (and `ddl`, formatted with {schema}) exists."""
    ensure_schema(settings, schema, ddl)
    # check: a connection PostgreSQL dropped (a restart, an outage) is replaced when it is
    # taken, not handed to a request that would fail on it.
    pool = ConnectionPool(settings.db_conninfo, min_size=1, max_size=max_size, open=False,
                          kwargs={"autocommit": True}, check=ConnectionPool.check_connection,
                          timeout=settings.db_pool_timeout_s)
    pool.open(wait=True, timeout=10)
    return pool
