"""Wires the database application to its tables and the tenant SQL runner, from settings."""

from __future__ import annotations

import logging
import threading

from services.shared.db import make_pool
from services.shared.pgmeta import PgMeta
from services.shared.settings import Settings

from .application import DatabaseApplication
from .storage import (DDL, SCHEMA, MemoryConfigStore, MemoryDbLog, MemorySnippetStore, SqlConfigStore, SqlDbLog,
                      SqlSnippetStore)
from services.shared.tenantsql import Limits, TenantSql


def build(settings: Settings, *, in_memory: bool = False) -> DatabaseApplication:
    sql = TenantSql(Limits(statement_timeout_ms=settings.database_statement_timeout_ms,
                           max_rows=settings.database_max_rows, max_bytes=settings.database_max_result_mb * 1024 * 1024))
    meta = PgMeta(settings)  # started on the first types call, stopped when idle
    if in_memory:
        return DatabaseApplication(sql, MemoryConfigStore(), MemoryDbLog(), MemorySnippetStore(), meta,
                                   settings.project_log_retention_h)
    # Started now, in the background, so that the first types call does not wait for it (4-6 s
    # on an idle machine, tens of seconds on a loaded one); it stops again after pg_meta_idle_s.
    threading.Thread(target=_warm, args=(meta,), name="pgmeta-warm", daemon=True).start()
    pool = make_pool(settings, SCHEMA, DDL, max_size=4)
    app = DatabaseApplication(sql, SqlConfigStore(pool), SqlDbLog(pool), SqlSnippetStore(pool), meta,
                              settings.project_log_retention_h)

    def close() -> None:
        meta.close()
        pool.close()

    app.close = close  # type: ignore[attr-defined]
    return app


def _warm(meta: PgMeta) -> None:
    try:
        meta.ensure()
    except Exception as e:  # noqa: BLE001 -- the first types call tries again and reports it
        logging.getLogger("database").warning("postgres-meta did not start ahead of use: %s", e)
