"""Wires the realtime application to its store and read models, from settings."""

from __future__ import annotations

from services.shared.db import ensure_schema
from services.shared.eventstore import open_application
from services.shared.settings import Settings
from services.shared.tenantsql import Limits, TenantSql

from .application import RealtimeApplication
from .config_views import DDL, ConfigRecorder, MemoryConfigViews, SqlConfigViews


def tenant_sql(settings: Settings) -> TenantSql:
    """The publication's SQL in tenants' databases: the database service's limits."""
    return TenantSql(Limits(statement_timeout_ms=settings.database_statement_timeout_ms))


def build(settings: Settings, *, in_memory: bool = False) -> RealtimeApplication:
    if in_memory:
        app = open_application(RealtimeApplication, settings, in_memory=True)
        app.views = MemoryConfigViews()
        app.tenant_sql = tenant_sql(settings)
        return app
    ensure_schema(settings, "realtime", DDL)
    app = open_application(RealtimeApplication, settings, recorder=ConfigRecorder)
    app.views = SqlConfigViews(app.recorder.datastore)  # type: ignore[attr-defined]
    app.tenant_sql = tenant_sql(settings)
    return app
