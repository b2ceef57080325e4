"""Wires the metering application to its stores and ports, from settings."""

from __future__ import annotations

from pathlib import Path

from services.shared.eventstore import open_application
from services.shared.mail import Mailer, make_mailer
from services.shared.db import make_pool
from services.shared.settings import Settings

from .adapters import TenantMeasurer
from .application import MeteringApplication
from .store import DDL, SCHEMA, UsageStore

ROOT = Path(__file__).resolve().parents[2]


def storage_root(settings: Settings) -> Path | None:
    """The local object store's directory (None for S3: not measured here, see docs/metering.md)."""
    if settings.storage_backend != "local":
        return None
    base = Path(settings.state_dir)
    return (base if base.is_absolute() else ROOT / base) / "storage"


def build(settings: Settings, *, mailer: Mailer | None = None) -> MeteringApplication:
    app = open_application(MeteringApplication, settings)
    pool = make_pool(settings, SCHEMA, DDL, max_size=4)
    app.usage = UsageStore(pool)
    app.measurer = TenantMeasurer(pool, storage_root(settings), settings.conninfo_for)
    app.mailer = mailer or make_mailer(settings)
    app.public_url = settings.public_url
    app.sample_interval_s = float(settings.metering_sample_interval_s)
    app.alert_interval_s = float(settings.metering_alert_interval_s)
    return app
