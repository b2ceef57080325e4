"""Wires the database application to its tables and the tenant SQL runner, from settings."""

from __future__ import annotations

from services.shared.db import make_pool
from services.shared.settings import Settings

from .application import DatabaseApplication
from .storage import (DDL, SCHEMA, MemoryConfigStore, MemoryDbLog, MemorySnippetStore, SqlConfigStore, SqlDbLog,
                      SqlSnippetStore)
from services.shared.tenantsql import Limits, TenantSql


def build(settings: Settings, *, in_memory: bool = False) -> DatabaseApplication:
    sql = TenantSql(Limits(statement_timeout_ms=settings.database_statement_timeout_ms,
                           max_rows=settings.database_max_rows, max_bytes=settings.database_max_result_mb * 1024 * 1024))
    if in_memory:
        return DatabaseApplication(sql, MemoryConfigStore(), MemoryDbLog(), MemorySnippetStore())
    pool = make_pool(settings, SCHEMA, DDL, max_size=4)
    app = DatabaseApplication(sql, SqlConfigStore(pool), SqlDbLog(pool), SqlSnippetStore(pool))
    app.close = pool.close  # type: ignore[attr-defined]
    return app
