"""Wires the functions application to its store, the secret box and its tables, from settings."""

from __future__ import annotations

from services.shared.crypto import secret_box
from services.shared.db import make_pool
from services.shared.eventstore import open_application
from services.shared.settings import Settings

from .application import FunctionsApplication
from .storage import (DDL, SCHEMA, MemoryBundleStore, MemoryLogStore, MemoryTenantStore, SqlBundleStore,
                      SqlLogStore, SqlTenantStore)


def build(settings: Settings, *, in_memory: bool = False, pool_size: int = 4) -> FunctionsApplication:
    app = open_application(FunctionsApplication, settings, in_memory=in_memory)
    app.box = secret_box(settings)
    if in_memory:
        app.bundles, app.logs, app.tenants = MemoryBundleStore(), MemoryLogStore(), MemoryTenantStore()
        return app
    pool = make_pool(settings, SCHEMA, DDL, max_size=pool_size)
    app.bundles, app.logs, app.tenants = SqlBundleStore(pool), SqlLogStore(pool), SqlTenantStore(pool)
    app.pool = pool  # type: ignore[attr-defined]
    return app
