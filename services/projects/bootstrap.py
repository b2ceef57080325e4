"""Wires the projects application to its store and the secret box, from settings."""

from __future__ import annotations

from services.shared.crypto import secret_box
from services.shared.eventstore import open_application
from services.shared.settings import Settings

from .application import ProjectsApplication


def build(settings: Settings, *, in_memory: bool = False) -> ProjectsApplication:
    app = open_application(ProjectsApplication, settings, in_memory=in_memory)
    app.box = secret_box(settings)
    app.db_host = settings.tenant_db_host
    return app
