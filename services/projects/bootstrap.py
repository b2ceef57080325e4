"""Wires the projects application to its store and the secret box, from settings."""

from __future__ import annotations

from services.shared.crypto import secret_box
from services.shared.db import ensure_schema
from services.shared.eventstore import open_application
from services.shared.settings import Settings

from .application import ProjectsApplication
from .readmodel import DDL, MemoryProjectViews, ReadModelRecorder, SqlProjectViews


def build(settings: Settings, *, in_memory: bool = False) -> ProjectsApplication:
    if in_memory:
        app = open_application(ProjectsApplication, settings, in_memory=True)
        app.views = MemoryProjectViews()
    else:
        ensure_schema(settings, "projects", DDL)
        app = open_application(ProjectsApplication, settings, recorder=ReadModelRecorder)
        app.views = SqlProjectViews(app.recorder.datastore)  # type: ignore[attr-defined]
        if app.views.is_empty() and app.recorder.max_notification_id():
            app.rebuild_views()  # a store from before the read model existed
    app.box = secret_box(settings)
    app.db_host = settings.tenant_db_host
    return app


def rebuild_views(settings: Settings) -> int:
    """`platformctl projections rebuild projects.project_views`: the read model again, from the events."""
    app = build(settings)
    try:
        return app.rebuild_views()
    finally:
        app.close()
