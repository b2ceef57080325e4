"""Wires the realtime application to its store and read models, from settings."""

from __future__ import annotations

from services.shared.db import ensure_schema
from services.shared.eventstore import open_application
from services.shared.settings import Settings
from services.shared.tenantsql import Limits, TenantSql

from services.shared.crypto import internal_token

from .adapters import NoRuntime, RealtimeRuntime, RealtimeServerStats, SupabaseRealtimeTenants
from .application import RealtimeApplication
from .config_views import DDL, ConfigRecorder, MemoryConfigViews, SqlConfigViews


def runtime_for(settings: Settings) -> RealtimeRuntime:
    """Where settings take effect besides our own server: Supabase Realtime's tenants API on
    the kubernetes driver; nowhere else on the local one."""
    if settings.provisioner_driver == "kubernetes":
        return SupabaseRealtimeTenants(settings.k8s_realtime_url, settings.k8s_realtime_api_secret)
    return NoRuntime()


def tenant_sql(settings: Settings) -> TenantSql:
    """The publication's SQL in tenants' databases: the database service's limits."""
    return TenantSql(Limits(statement_timeout_ms=settings.database_statement_timeout_ms))


def build(settings: Settings, *, in_memory: bool = False) -> RealtimeApplication:
    if in_memory:
        app = open_application(RealtimeApplication, settings, in_memory=True)
        app.views = MemoryConfigViews()
    else:
        ensure_schema(settings, "realtime", DDL)
        app = open_application(RealtimeApplication, settings, recorder=ConfigRecorder)
        app.views = SqlConfigViews(app.recorder.datastore)  # type: ignore[attr-defined]
    app.runtime = runtime_for(settings)
    app.tenant_sql = tenant_sql(settings)
    return app


def build_server_stats(settings: Settings) -> RealtimeServerStats:
    return RealtimeServerStats(f"http://{settings.realtime_host}:{settings.realtime_port}",
                               internal_token(settings, "realtime"))
