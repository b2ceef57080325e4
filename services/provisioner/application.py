"""provisioner application: record a requested operation as a saga (`open_saga`), and run
sagas to their outcome (`SagaRunner`), step by step through the driver port.

Imports the domain, the driver port, eventsourcing and shared errors; no framework. The
saga index, the per-saga lock, the credentials source and the clock are ports set by
`services.provisioner.bootstrap`, so tests swap them for in-memory fakes.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Any, Callable, ContextManager, Iterator, Protocol

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from services.shared.errors import Conflict, InvalidInput, NotFound
from services.shared.eventstore import GroupCommit

from .domain import OPERATIONS, RetryPolicy, Saga
from .drivers.base import Driver, StepContext, StepError, TenantCredentials

log = logging.getLogger("provisioner")
REF_RE = re.compile(r"^[a-z]{20}$")


# -- ports ------------------------------------------------------------------------------------

class SagaIndex(Protocol):
    """Which sagas are unfinished, so a crashed runner's work is found again."""

    def opened(self, saga_id: uuid.UUID, operation_id: str, operation: str, ref: str) -> None: ...
    def finished(self, saga_id: uuid.UUID, status: str) -> None: ...
    def unfinished(self) -> list[uuid.UUID]: ...


class SagaLocks(Protocol):
    """At most one runner per saga, across processes."""

    def hold(self, saga_id: uuid.UUID) -> ContextManager[bool]:
        """Yields True while this caller holds the saga, False if someone else does."""


class CredentialsPort(Protocol):
    def get_tenant_credentials(self, ref: str) -> TenantCredentials: ...


class MemorySagaIndex:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict[str, str]] = {}

    def opened(self, saga_id: uuid.UUID, operation_id: str, operation: str, ref: str) -> None:
        self.rows.setdefault(saga_id, {"operation_id": operation_id, "operation": operation, "ref": ref,
                                       "status": "running"})

    def finished(self, saga_id: uuid.UUID, status: str) -> None:
        if saga_id in self.rows:
            self.rows[saga_id]["status"] = status

    def unfinished(self) -> list[uuid.UUID]:
        return [s for s, row in self.rows.items() if row["status"] == "running"]


class MemorySagaLocks:
    """One process's locks (tests, and a platform with a single provisioner process)."""

    def __init__(self) -> None:
        self._held: set[uuid.UUID] = set()
        self._mutex = threading.Lock()

    @contextmanager
    def hold(self, saga_id: uuid.UUID) -> Iterator[bool]:
        with self._mutex:
            got = saga_id not in self._held
            if got:
                self._held.add(saga_id)
        try:
            yield got
        finally:
            if got:
                with self._mutex:
                    self._held.discard(saga_id)


# -- views ------------------------------------------------------------------------------------

def saga_view(saga: Saga) -> dict[str, Any]:
    """A saga as plain data (what crosses a process boundary): never secrets, by construction."""
    return {
        "saga_id": str(saga.id),
        "operation_id": saga.operation_id,
        "operation": saga.operation,
        "ref": saga.ref,
        "status": saga.status,
        "plan": list(saga.plan),
        "completed_steps": [s for s in saga.plan if s in saga.results],
        "current_step": saga.current,
        "failed_attempts": saga.failed_attempts,
        "last_error": saga.last_error,
        "reason": saga.reason,
        "outcome": saga.outcome,
        "resumptions": saga.resumptions,
    }


def meta_for(operation: str, ref: str, operation_id: str, org_slug: str | None,
             ctx: dict[str, Any] | None) -> dict[str, Any]:
    """Repeated on every saga event, so the outbox maps each event alone (a pure function)."""
    ctx = ctx or {}
    return {"operation": operation, "ref": ref, "operation_id": operation_id, "org_slug": org_slug,
            "correlation_id": ctx.get("correlation_id"), "causation_id": ctx.get("causation_id")}


class ProvisionerApplication(GroupCommit, Application[uuid.UUID]):
    name = "provisioner"

    plans: dict[str, tuple[str, ...]] = {}  # the driver's plan per operation (set by bootstrap)
    retry: RetryPolicy = RetryPolicy()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.index: SagaIndex = MemorySagaIndex()  # bootstrap swaps in the PostgreSQL one

    def open_saga(self, operation: str, ref: str, operation_id: str, *, org_slug: str | None = None,
                  ctx: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the saga of a requested operation, or find it (same operation_id: a
        redelivered request). Returns it as plain data; `running` says it is unfinished."""
        if operation not in OPERATIONS:
            raise InvalidInput(f"operation: must be one of {', '.join(OPERATIONS)}")
        if operation not in self.plans:
            raise InvalidInput(f"operation {operation}: the driver has no plan for it")
        saga_id = Saga.create_id(operation_id)
        try:
            saga: Saga = self.repository.get(saga_id)
        except AggregateNotFoundError:
            saga = Saga(operation_id=operation_id, operation=operation, ref=ref, org_slug=org_slug,
                        plan=list(self.plans[operation]), max_attempts=self.retry.max_attempts,
                        meta=meta_for(operation, ref, operation_id, org_slug, ctx))
            try:
                self.save(saga)
            except IntegrityError:
                saga = self.repository.get(saga_id)  # a concurrent delivery created it first
        if (saga.operation, saga.ref) != (operation, ref):
            raise Conflict(f"operation {operation_id} is already a {saga.operation} of project {saga.ref}")
        if not saga.finished:
            self.index.opened(saga.id, operation_id, operation, ref)
        return saga_view(saga)

    def get_saga(self, saga_id: str | uuid.UUID) -> dict[str, Any]:
        return saga_view(self._saga(saga_id))

    def saga_for_operation(self, operation_id: str) -> dict[str, Any]:
        return saga_view(self._saga(Saga.create_id(operation_id)))

    def saga_history(self, operation_id: str) -> list[dict[str, Any]]:
        """Every event of a saga, oldest first: what the provisioner did, when, and why."""
        saga_id = Saga.create_id(operation_id)
        history = []
        for e in self.events.get(saga_id):
            fields = {k: v for k, v in vars(e).items()
                      if k not in ("originator_id", "originator_version", "timestamp", "meta")}
            history.append({"event": type(e).__name__, "version": e.originator_version,
                            "at": e.timestamp.isoformat(), **fields})  # type: ignore[attr-defined]
        if not history:
            raise NotFound(f"no saga for operation {operation_id}")
        return history

    def close(self) -> None:
        close = getattr(self.index, "close", None)
        if callable(close):
            close()
        super().close()

    def _saga(self, saga_id: str | uuid.UUID) -> Saga:
        try:
            saga: Saga = self.repository.get(uuid.UUID(str(saga_id)))
            return saga
        except (AggregateNotFoundError, ValueError):
            raise NotFound(f"saga {saga_id} not found") from None


class SagaRunner:
    """Runs sagas to their outcome: each step through the driver, each start, completion,
    failed attempt and outcome saved as an event; failed attempts retried with exponential
    backoff; a saga at most once at a time (`locks`). A saga found half-done (its previous
    runner died) resumes at the step it was in, without redoing completed steps."""

    def __init__(self, driver: Driver, locks: SagaLocks, *, retry: RetryPolicy | None = None,
                 sleep: Callable[[float], None] = time.sleep, step_delay_s: float = 0.0, name: str = "runner"):
        self.driver = driver
        self.locks = locks
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.step_delay_s = step_delay_s
        self.name = name
        self.running = 0  # sagas this runner is running now
        self._running_lock = threading.Lock()

    def run(self, app: ProvisionerApplication, saga_id: str | uuid.UUID,
            credentials: CredentialsPort) -> dict[str, Any] | None:
        """Run the saga to its end. None if another runner holds it (it will finish it)."""
        saga_id = uuid.UUID(str(saga_id))
        with self.locks.hold(saga_id) as held:
            if not held:
                return None
            with self._running_lock:
                self.running += 1
            try:
                saga: Saga = app.repository.get(saga_id)
                if not saga.finished:
                    self._run_locked(app, saga, credentials)
                app.index.finished(saga.id, saga.status)
                return saga_view(saga)
            finally:
                with self._running_lock:
                    self.running -= 1

    def reconcile(self, app: ProvisionerApplication, credentials: CredentialsPort) -> list[dict[str, Any]]:
        """Finish every saga left unfinished (by a crash); skip those another runner holds."""
        finished = []
        for saga_id in app.index.unfinished():
            try:
                view = self.run(app, saga_id, credentials)
            except AggregateNotFoundError:
                app.index.finished(saga_id, "missing")
                continue
            except Exception:  # noqa: BLE001 -- one broken saga must not stop the others
                log.exception("reconciling saga %s failed; next pass tries again", saga_id)
                continue
            if view is not None:
                finished.append(view)
        return finished

    def tenant_login(self, ref: str, service: str) -> dict[str, Any]:
        login = getattr(self.driver, "tenant_login", None)
        if login is None:
            raise NotFound(f"the {self.driver.name} driver keeps no {service} login")
        try:
            return dict(login(ref, service))
        except StepError as exc:
            raise NotFound(str(exc)) from None

    def studio_upstream(self, ref: str, org: str = "") -> dict[str, Any]:
        """Where the project's own Supabase Studio answers (docs/studio.md): the driver's
        ensure_studio (create-or-get, scaled back up). The gateway's bridge proxies to it
        after checking membership; a driver without per-project Studio (local) has none."""
        if not isinstance(ref, str) or not REF_RE.match(ref):
            raise InvalidInput("ref: 20 lowercase letters")
        ensure = getattr(self.driver, "ensure_studio", None)
        if ensure is None:
            raise NotFound(f"the {self.driver.name} driver runs no Studio per project")
        try:
            return {"url": str(ensure(ref, org)["url"])}
        except StepError as exc:
            raise NotFound(str(exc)) from None

    def check_tenant(self, ref: str) -> dict[str, dict[str, Any]]:
        """Health of the tenant's services, by name (db, storage), as the driver sees them."""
        if not isinstance(ref, str) or not REF_RE.match(ref):
            raise InvalidInput("ref: 20 lowercase letters")
        return self.driver.check_tenant(ref)

    def maintain(self) -> dict[str, Any]:
        """The driver's upkeep between sagas; a failure is logged and tried again next time.
        Skipped while this runner has sagas running: upkeep (e.g. building spare databases)
        would take a worker and the machine from them, and the next tick comes soon."""
        if self.running:
            return {}
        try:
            return self.driver.maintain(stop=lambda: self.running > 0)
        except Exception as exc:  # noqa: BLE001 -- upkeep must not kill its timer
            log.warning("driver upkeep failed: %s", self.driver.describe_error(exc))
            return {}

    def _run_locked(self, app: ProvisionerApplication, saga: Saga, credentials: CredentialsPort) -> None:
        if saga.current is not None or saga.results:
            # Progress recorded and the lock free: whoever made it is gone.
            saga.resume(runner=self.name)
            log.info("resuming %s saga %s of %s at %s", saga.operation, saga.id, saga.ref,
                     saga.current or saga.next_step)
        ctx = StepContext(ref=saga.ref, operation_id=saga.operation_id,
                          credentials=self._credentials_once(credentials, saga.ref), org=saga.org_slug or "")
        while True:
            step = saga.next_step
            if step is None:
                saga.succeed(self._outcome(saga))
                app.save(saga)
                log.info("%s of %s succeeded", saga.operation, saga.ref)
                return
            saga.start_step(step)
            app.save(saga)  # with the previous step's completion: one commit per step
            if self.step_delay_s:
                self.sleep(self.step_delay_s)
            try:
                result = self.driver.run_step(saga.operation, step, ctx)
            except Exception as exc:  # noqa: BLE001 -- every failure is recorded, then retried or final
                error = str(exc) if isinstance(exc, StepError) else self.driver.describe_error(exc)
                permanent = isinstance(exc, StepError) and exc.permanent
                if permanent or saga.attempts_left <= 1:
                    self._give_up(app, saga, ctx, step, error)
                    return
                delay_ms = self.retry.delay_ms(saga.failed_attempts + 1)
                saga.attempt_failed(step, error, retry_in_ms=delay_ms)
                app.save(saga)
                log.warning("%s of %s: %s failed (attempt %d/%d), retrying in %d ms: %s", saga.operation, saga.ref,
                            step, saga.failed_attempts, saga.max_attempts, delay_ms, error)
                self.sleep(delay_ms / 1000)
                continue
            saga.complete_step(step, result)

    def _give_up(self, app: ProvisionerApplication, saga: Saga, ctx: StepContext, step: str, error: str) -> None:
        completed = [s for s in saga.plan if s in saga.results]
        try:
            done = self.driver.compensate(saga.operation, ctx, completed)
            if done:
                log.info("%s of %s failed; compensated: %s", saga.operation, saga.ref, done)
        except Exception as exc:  # noqa: BLE001 -- the failure itself must still be recorded
            log.error("%s of %s: compensation failed: %s", saga.operation, saga.ref, exc)
        saga.fail(step, error, attempts=saga.failed_attempts + 1)
        app.save(saga)
        log.warning("%s of %s failed: %s", saga.operation, saga.ref, saga.reason)

    def _outcome(self, saga: Saga) -> dict[str, Any]:
        if saga.operation in ("create", "restore"):
            return {"connection": self.driver.connection_info(saga.ref)}
        if saga.operation == "pause":
            return {"backup_bytes": int(saga.facts().get("backup_bytes", 0))}
        return {}

    @staticmethod
    def _credentials_once(port: CredentialsPort, ref: str) -> Callable[[], TenantCredentials]:
        """Fetched when a step first needs them, kept in memory for this run only."""
        cache: list[TenantCredentials] = []

        def get() -> TenantCredentials:
            if not cache:
                try:
                    creds = port.get_tenant_credentials(ref)
                except Exception as exc:  # noqa: BLE001 -- any failure: the step fails and is retried
                    reason = str(exc).strip() or type(exc).__name__
                    raise StepError("could not get the project's credentials from the projects service "
                                    f"({reason})") from None
                if not isinstance(creds, dict) or not isinstance(creds.get("db_pass"), str):
                    raise StepError("the projects service returned no database password for this project")
                cache.append(creds)
            return cache[0]

        return get
