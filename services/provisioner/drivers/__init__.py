"""Drivers: the infrastructure behind provisioning (the port in base.py, local.py for one
machine, s3.py for S3-compatible object storage). `make_driver` picks one from settings."""

from __future__ import annotations

from services.shared.settings import Settings

from ..storage import make_object_store
from .base import Driver


def driver_class(settings: Settings) -> type[Driver]:
    if settings.provisioner_driver == "local":
        from .local import LocalDriver

        return LocalDriver
    raise ValueError(f"PLATFORM_PROVISIONER_DRIVER={settings.provisioner_driver!r}: only 'local' is built "
                     "(the kubernetes driver comes with its own issue)")


def make_driver(settings: Settings) -> Driver:
    cls = driver_class(settings)
    from .local import LocalDriver

    if cls is LocalDriver:
        return LocalDriver(settings, make_object_store(settings),
                           spare_databases=max(settings.provisioner_spare_databases, 0), keep_idle=4)
    return cls(settings, make_object_store(settings))  # type: ignore[call-arg]
