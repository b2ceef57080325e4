"""Wires the orgs application to its store, its read model and ports, from settings."""

from __future__ import annotations

from datetime import timedelta

from argon2 import PasswordHasher

from services.shared.db import ensure_schema, make_pool
from services.shared.eventstore import open_application
from services.shared.mail import Mailer, make_mailer
from services.shared.settings import Settings

from .adapters import DDL, QueuedHasher, SqlTokenUsage
from .application import MemoryTokenUsage, OrgsApplication
from .readmodel import DDL as VIEWS_DDL, MemoryOrgViews, ReadModelRecorder, SqlOrgViews


def build(settings: Settings, *, in_memory: bool = False, mailer: Mailer | None = None) -> OrgsApplication:
    if in_memory:
        app = open_application(OrgsApplication, settings, in_memory=True)
        app.views = MemoryOrgViews()
    else:
        ensure_schema(settings, "orgs", VIEWS_DDL)
        app = open_application(OrgsApplication, settings, recorder=ReadModelRecorder)
        app.views = SqlOrgViews(app.recorder.datastore)  # type: ignore[attr-defined]
        if app.views.is_empty() and app.recorder.max_notification_id():
            app.rebuild_views()  # a store from before the read model existed
    app.mailer = mailer or make_mailer(settings)
    app.hasher = QueuedHasher(PasswordHasher(time_cost=settings.password_hash_time_cost,
                                             memory_cost=settings.password_hash_memory_kib),
                              settings.password_hash_concurrency)
    app.public_url = settings.public_url
    app.invitation_ttl = timedelta(hours=settings.invitation_ttl_hours)
    app.email_verification_ttl = timedelta(hours=settings.email_verification_ttl_hours)
    if in_memory:
        app.token_usage = MemoryTokenUsage()
    else:
        app.token_usage = SqlTokenUsage(make_pool(settings, "orgs", DDL, max_size=4))
    return app


def rebuild_views(settings: Settings) -> int:
    """`platformctl projections rebuild orgs.views`: the read model again, from the events."""
    app = build(settings)
    try:
        return app.rebuild_views()
    finally:
        app.close()
