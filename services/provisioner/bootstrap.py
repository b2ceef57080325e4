"""Wires the provisioner from settings: the application on its store (with the saga index),
and the saga runner (driver, per-saga locks, retry policy)."""

from __future__ import annotations

from psycopg_pool import ConnectionPool

from services.shared.db import make_pool
from services.shared.eventstore import open_application
from services.shared.settings import Settings

from .adapters import DDL, SqlSagaIndex
from .application import MemorySagaIndex, MemorySagaLocks, ProvisionerApplication, SagaLocks, SagaRunner
from .domain import RetryPolicy
from .drivers import driver_class, make_driver
from .drivers.base import Driver


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=max(settings.provisioner_max_attempts, 1),
                       base_delay_ms=max(settings.provisioner_retry_base_ms, 0))


def _pool(settings: Settings, max_size: int) -> ConnectionPool:
    return make_pool(settings, "provisioner", DDL, max_size=max_size)


def lock_pool(settings: Settings, max_workers: int = 10) -> ConnectionPool:
    """Connections that hold per-saga advisory locks, one per saga running at once: nameko
    runs at most max_workers handlers, plus the reconciler."""
    return _pool(settings, max_workers + 2)


def build(settings: Settings, *, in_memory: bool = False) -> ProvisionerApplication:
    app = open_application(ProvisionerApplication, settings, in_memory=in_memory)
    app.plans = dict(driver_class(settings).PLANS)
    app.retry = retry_policy(settings)
    app.index = MemorySagaIndex() if in_memory else SqlSagaIndex(_pool(settings, 2))
    return app


def build_runner(settings: Settings, *, driver: Driver | None = None, locks: SagaLocks | None = None,
                 name: str = "runner") -> SagaRunner:
    """The runner; without `locks`, in-memory ones (one process: tests, tools)."""
    if driver is None:
        driver = make_driver(settings)
        sweep = getattr(driver, "sweep_tmp", None)
        if callable(sweep):
            sweep()
    return SagaRunner(driver, locks or MemorySagaLocks(), retry=retry_policy(settings),
                      step_delay_s=max(settings.provisioner_step_delay_ms, 0) / 1000, name=name)
