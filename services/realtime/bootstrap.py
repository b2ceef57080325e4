"""Wires the realtime application to its store and read models, from settings."""

from __future__ import annotations

from services.shared.db import ensure_schema
from services.shared.eventstore import open_application
from services.shared.settings import Settings

from .application import RealtimeApplication
from .config_views import DDL, ConfigRecorder, MemoryConfigViews, SqlConfigViews


def build(settings: Settings, *, in_memory: bool = False) -> RealtimeApplication:
    if in_memory:
        app = open_application(RealtimeApplication, settings, in_memory=True)
        app.views = MemoryConfigViews()
        return app
    ensure_schema(settings, "realtime", DDL)
    app = open_application(RealtimeApplication, settings, recorder=ConfigRecorder)
    app.views = SqlConfigViews(app.recorder.datastore)  # type: ignore[attr-defined]
    return app
