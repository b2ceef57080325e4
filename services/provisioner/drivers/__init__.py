"""Drivers: the infrastructure behind provisioning (the port in base.py, local.py for one
machine, kubernetes.py for a cluster, s3.py for S3-compatible object storage). `make_driver` picks one from settings."""

from __future__ import annotations

from services.shared.settings import Settings

from ..storage import make_object_store
from .base import Driver


def driver_class(settings: Settings) -> type[Driver]:
    if settings.provisioner_driver == "local":
        from .local import LocalDriver

        return LocalDriver
    if settings.provisioner_driver == "kubernetes":
        from .kubernetes import KubernetesDriver

        return KubernetesDriver
    raise ValueError(f"PLATFORM_PROVISIONER_DRIVER={settings.provisioner_driver!r}: local or kubernetes")


def make_driver(settings: Settings) -> Driver:
    cls = driver_class(settings)
    from .local import LocalDriver

    if cls is LocalDriver:
        return LocalDriver(settings, make_object_store(settings),
                           spare_databases=max(settings.provisioner_spare_databases, 0), keep_idle=4)
    return cls(settings, make_object_store(settings))  # type: ignore[call-arg]
