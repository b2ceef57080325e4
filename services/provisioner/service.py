"""provisioner nameko entrypoint: lifecycle requests from `projects` open (or find) their saga
and run it to its outcome; timers resume sagas a crash left unfinished and run the driver's
upkeep (spare databases); `check_tenant` answers tenant health. Translates only: the rules
live in the application and the driver."""

import services.shared.greenpg  # noqa: F401  (must precede psycopg)

import os
from typing import Any

import eventlet
from nameko.extensions import DependencyProvider
from nameko.rpc import rpc
from nameko.timer import timer

from services.shared.errors import EXPECTED
from services.shared.nameko_ext import ApplicationProvider, history_rpc, reliable_handler, RemotePort, TimedRpcProxy
from services.shared.settings import load_settings

from .adapters import PgSagaLocks
from .application import ProvisionerApplication, SagaRunner
from .bootstrap import build, build_runner, lock_pool
from .drivers.base import TenantCredentials

RECONCILE_INTERVAL_S = 5
MAINTAIN_INTERVAL_S = 2
CREDENTIALS_TIMEOUT_S = 10


class RunnerProvider(DependencyProvider):
    """The saga runner (driver, per-saga locks), built once per process at container setup.
    Its locks use a pool of their own: the application's is not built yet at setup."""

    def setup(self) -> None:
        settings = load_settings()
        self.pool = lock_pool(settings, int(self.container.config.get("max_workers", 10)))
        self.runner: SagaRunner = build_runner(settings, locks=PgSagaLocks(self.pool),
                                               name=f"provisioner-{os.getpid()}")

    def stop(self) -> None:
        self.runner.driver.close()
        self.pool.close()

    def get_dependency(self, worker_ctx: Any) -> SagaRunner:
        return self.runner


class CredentialsViaRpc:
    """The projects service's `get_tenant_credentials`, bounded in time: nameko's RPC proxy
    would otherwise wait forever for a service that is down."""

    def __init__(self, proxy: Any, timeout: float = CREDENTIALS_TIMEOUT_S):
        self.port = RemotePort(proxy)
        self.timeout = timeout

    def get_tenant_credentials(self, ref: str) -> TenantCredentials:
        with eventlet.Timeout(self.timeout, TimeoutError(f"no answer within {self.timeout:.0f} s")):
            return self.port.get_tenant_credentials(ref)  # type: ignore[no-any-return]


class ProvisionerService:
    name = "provisioner"
    history = history_rpc()  # time travel over this service's store (admin panel)
    orgs = TimedRpcProxy("orgs")  # admin checks of the history RPC

    app: ProvisionerApplication = ApplicationProvider(build)
    runner: SagaRunner = RunnerProvider()
    projects = TimedRpcProxy("projects")

    @rpc
    def health(self) -> dict[str, Any]:
        self.app.recorder.max_notification_id()
        return {"service": self.name, "status": "ok"}

    @rpc(expected_exceptions=EXPECTED)
    def check_tenant(self, ref: str) -> dict[str, dict[str, Any]]:
        return self.runner.check_tenant(ref)

    @rpc(expected_exceptions=EXPECTED)
    def studio_upstream(self, ref: str, org: str = "") -> dict[str, Any]:
        """Internal (the gateway's Studio bridge, kubernetes driver): the project's Studio URL,
        started on demand. The gateway has checked membership and role before asking."""
        return self.runner.studio_upstream(ref, org)

    @rpc(expected_exceptions=EXPECTED)
    def get_tenant_login(self, ref: str, service: str) -> dict[str, Any]:
        """Internal (the project edge's Auth and Storage APIs): their database login."""
        return self.runner.tenant_login(ref, service)

    @rpc(expected_exceptions=EXPECTED)
    def get_saga(self, operation_id: str) -> dict[str, Any]:
        return self.app.saga_for_operation(operation_id)

    @rpc(expected_exceptions=EXPECTED)
    def saga_history(self, operation_id: str) -> list[dict[str, Any]]:
        return self.app.saga_history(operation_id)

    # -- lifecycle requests: open the saga (idempotent on operation_id), run it to its end ----
    @reliable_handler("projects", "project_requested")
    def on_project_requested(self, envelope: dict[str, Any]) -> None:
        self._run("create", envelope)

    @reliable_handler("projects", "project_pause_requested")
    def on_pause_requested(self, envelope: dict[str, Any]) -> None:
        self._run("pause", envelope)

    @reliable_handler("projects", "project_restore_requested")
    def on_restore_requested(self, envelope: dict[str, Any]) -> None:
        self._run("restore", envelope)

    @reliable_handler("projects", "project_deletion_requested")
    def on_deletion_requested(self, envelope: dict[str, Any]) -> None:
        self._run("delete", envelope)

    # eager: a restarted provisioner looks for interrupted sagas at once.
    @timer(interval=RECONCILE_INTERVAL_S, eager=True)
    def reconcile(self) -> None:
        self.runner.reconcile(self.app, CredentialsViaRpc(self.projects))

    @timer(interval=MAINTAIN_INTERVAL_S, eager=True)
    def maintain(self) -> None:
        self.runner.maintain()

    def _run(self, operation: str, envelope: dict[str, Any]) -> None:
        p = envelope["payload"]
        saga = self.app.open_saga(operation, p["ref"], p["operation_id"],
                                  org_slug=envelope.get("org_id") or p.get("org_slug"),
                                  ctx={"correlation_id": envelope.get("correlation_id"),
                                       "causation_id": envelope["event_id"]})
        if saga["status"] == "running":
            self.runner.run(self.app, saga["saga_id"], CredentialsViaRpc(self.projects))
