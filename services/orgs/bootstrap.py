"""Wires the orgs application to its store and ports, from settings."""

from __future__ import annotations

from datetime import timedelta

from argon2 import PasswordHasher

from services.shared.db import make_pool
from services.shared.eventstore import open_application
from services.shared.mail import Mailer, make_mailer
from services.shared.settings import Settings

from .adapters import DDL, QueuedHasher, SqlTokenUsage
from .application import MemoryTokenUsage, OrgsApplication


def build(settings: Settings, *, in_memory: bool = False, mailer: Mailer | None = None) -> OrgsApplication:
    app = open_application(OrgsApplication, settings, in_memory=in_memory)
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
