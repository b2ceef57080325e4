"""Provisioner saga scenarios, run twice: on eventsourcing's in-memory store (with in-memory
locks and index) and on PostgreSQL (the real saga index and advisory locks), with a fake
driver that fails when told to and counts what it creates."""

from __future__ import annotations

import threading
import uuid
from typing import Any, Iterator

import pytest

from services.provisioner.adapters import PgSagaLocks, SqlSagaIndex
from services.provisioner.application import MemorySagaLocks, ProvisionerApplication, SagaRunner
from services.provisioner.bootstrap import build, lock_pool
from services.provisioner.domain import RetryPolicy, Saga
from services.provisioner.drivers.base import Driver, StepContext, StepError
from services.provisioner.outbox import to_message
from services.shared.db import bootstrap, drop_database
from services.shared.errors import Conflict, InvalidInput, NotFound
from tests.conftest import make_test_settings

pytestmark = pytest.mark.timeout(60)

REF = "abcdefghijklmnopqrst"
DB_PASS = "s3cret-db-pass-never-stored"
REFUSED = "could not connect to PostgreSQL at 127.0.0.1:5432 (connection refused)"


class Crash(BaseException):
    """Stands in for SIGKILL: not an Exception, so no `except Exception` in the runner sees it."""


class FakeDriver(Driver):
    """Creates nothing real: records each resource it 'creates' and how often, and fails a
    step N times (or crashes) when told to."""

    name = "fake"
    PLANS = {
        "create": ("prepare_cluster", "create_roles", "create_database", "create_bucket"),
        "pause": ("block_connections", "backup_database", "drop_database"),
        "restore": ("restore_database", "grant_access"),
        "delete": ("drop_database", "drop_roles", "delete_bucket"),
    }

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.all_calls: list[str] = []  # never cleared: what ran, across "processes"
        self.fail: dict[str, tuple[int, BaseException]] = {}
        self.passwords_seen: list[str] = []
        self.compensated: list[tuple[str, list[str]]] = []

    def fail_step(self, step: str, times: int, exc: BaseException | None = None) -> None:
        self.fail[step] = (times, exc or StepError(REFUSED))

    def run_step(self, operation: str, step: str, ctx: StepContext) -> dict[str, Any]:
        self.calls.append(step)
        self.all_calls.append(step)
        times, exc = self.fail.get(step, (0, StepError("")))
        if times:
            self.fail[step] = (times - 1, exc)
            raise exc
        if step == "create_roles":
            self.passwords_seen.append(ctx.credentials()["db_pass"])
        if step == "backup_database":
            return {"backup_bytes": 4096, "backup_key": f"_platform/backups/{ctx.operation_id}.dump"}
        return {"done": step}

    def connection_info(self, ref: str) -> dict[str, Any]:
        return {"db_host": "127.0.0.1", "db_port": 5432, "db_name": ref, "db_user": f"postgres.{ref}",
                "bucket": f"sp-{ref}"}

    def check_tenant(self, ref: str) -> dict[str, dict[str, Any]]:
        return {"db": {"healthy": True, "status": "ACTIVE_HEALTHY"}}

    def compensate(self, operation: str, ctx: StepContext, completed: list[str]) -> str | None:
        self.compensated.append((operation, completed))
        return "undone"


class FakeCredentials:
    def __init__(self, fail_times: int = 0) -> None:
        self.calls = 0
        self.fail_times = fail_times

    def get_tenant_credentials(self, ref: str) -> dict[str, str]:
        self.calls += 1
        if self.fail_times:
            self.fail_times -= 1
            raise TimeoutError("no answer within 10 s")
        return {"db_pass": DB_PASS, "jwt_secret": "jwt-secret-never-stored"}


@pytest.fixture(scope="module")
def pg_settings() -> Iterator[Any]:
    s = make_test_settings("prov").with_overrides(provisioner_max_attempts=3, provisioner_retry_base_ms=200)
    bootstrap(s)
    yield s
    drop_database(s)


class World:
    """One application and the runner pieces around it, on one kind of storage."""

    def __init__(self, kind: str, settings: Any):
        self.kind = kind
        self.settings = settings
        self.app: ProvisionerApplication = build(settings, in_memory=kind == "memory")
        self.app.plans = dict(FakeDriver.PLANS)
        self.app.retry = RetryPolicy(max_attempts=3, base_delay_ms=200)
        self.driver = FakeDriver()
        self.sleeps: list[float] = []
        self.pools: list[Any] = []
        self.locks = self.new_locks()
        self.credentials = FakeCredentials()

    def new_locks(self) -> Any:
        if self.kind == "memory":
            return MemorySagaLocks()
        pool = lock_pool(self.settings)
        self.pools.append(pool)
        return PgSagaLocks(pool)

    def runner(self, locks: Any = None, name: str = "runner") -> SagaRunner:
        return SagaRunner(self.driver, locks or self.locks, retry=self.app.retry, sleep=self.sleeps.append, name=name)

    def request(self, operation: str = "create", operation_id: str | None = None, ref: str = REF) -> dict[str, Any]:
        return self.app.open_saga(operation, ref, operation_id or str(uuid.uuid4()), org_slug="acme",
                                  ctx={"correlation_id": "corr-1", "causation_id": "msg-1"})

    def events(self, saga_id: str) -> list[Any]:
        return list(self.app.events.get(uuid.UUID(saga_id)))

    def names(self, saga_id: str) -> list[str]:
        return [type(e).__name__ for e in self.events(saga_id)]

    def messages(self, saga_id: str) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for e in self.events(saga_id):
            m = to_message(e)
            if m is not None:
                out.append((m.event_type, m.payload))
        return out

    def close(self) -> None:
        self.app.close()
        for p in self.pools:
            p.close()


@pytest.fixture(params=["memory", "postgres"])
def world(request: Any, pg_settings: Any) -> Iterator[World]:
    w = World(request.param, pg_settings)
    yield w
    w.close()


# ---- the happy path ---------------------------------------------------------------------------

def test_create_runs_every_step_once_and_publishes_progress_then_the_outcome(world: World) -> None:
    saga = world.request("create", "op-create-1")
    assert saga["status"] == "running" and saga["plan"] == list(FakeDriver.PLANS["create"])
    done = world.runner().run(world.app, saga["saga_id"], world.credentials)
    assert done is not None and done["status"] == "succeeded"
    assert world.driver.calls == list(FakeDriver.PLANS["create"])
    assert done["outcome"] == {"connection": world.driver.connection_info(REF)}
    # Every step start and completion, and the outcome, is an event.
    assert world.names(saga["saga_id"]) == ["Requested"] + ["StepStarted", "StepCompleted"] * 4 + ["Succeeded"]
    # Progress for the UI, then the outcome; attempts and completions stay private.
    msgs = world.messages(saga["saga_id"])
    assert [t for t, _ in msgs] == ["provisioning_step_started"] * 4 + ["project_provisioned"]
    assert [(p["step"], p["step_index"], p["total_steps"]) for _, p in msgs[:4]] == [
        ("prepare_cluster", 1, 4), ("create_roles", 2, 4), ("create_database", 3, 4), ("create_bucket", 4, 4)]
    assert msgs[-1][1] == {"ref": REF, "operation_id": "op-create-1", "connection": world.driver.connection_info(REF)}
    assert world.sleeps == [] and world.credentials.calls == 1
    assert uuid.UUID(saga["saga_id"]) not in world.app.index.unfinished()


def test_pause_restore_delete_publish_their_outcomes(world: World) -> None:
    expected = {"pause": ("project_paused", {"backup_bytes": 4096}),
                "restore": ("project_restored", {"connection": world.driver.connection_info(REF)}),
                "delete": ("project_removed", {})}
    for operation, (event_type, extra) in expected.items():
        saga = world.request(operation)
        world.runner().run(world.app, saga["saga_id"], world.credentials)
        kind, payload = world.messages(saga["saga_id"])[-1]
        assert (kind, payload) == (event_type, {"ref": REF, "operation_id": saga["operation_id"], **extra})
    # Pause, restore and delete need no secret: the credentials were never fetched.
    assert world.credentials.calls == 0


def test_a_redelivered_request_finds_the_same_saga_and_runs_nothing_again(world: World) -> None:
    first = world.request("create", "op-dup")
    again = world.request("create", "op-dup")
    assert again["saga_id"] == first["saga_id"] == str(Saga.create_id("op-dup"))
    world.runner().run(world.app, first["saga_id"], world.credentials)
    calls = list(world.driver.calls)
    third = world.request("create", "op-dup")  # a late redelivery after the outcome
    assert third["status"] == "succeeded"
    world.runner().run(world.app, third["saga_id"], world.credentials)
    assert world.driver.calls == calls
    assert world.names(first["saga_id"]).count("Requested") == 1
    with pytest.raises(Conflict):
        world.request("pause", "op-dup")  # the same operation id cannot name another operation


# ---- failures, retries, backoff ---------------------------------------------------------------

def test_a_failing_step_is_retried_with_exponential_backoff_then_succeeds(world: World) -> None:
    world.driver.fail_step("create_database", 2)
    saga = world.request()
    done = world.runner().run(world.app, saga["saga_id"], world.credentials)
    assert done is not None and done["status"] == "succeeded"
    assert world.sleeps == [0.2, 0.4]
    assert world.driver.calls.count("create_database") == 3
    failed = [e for e in world.events(saga["saga_id"]) if isinstance(e, Saga.StepAttemptFailed)]
    assert [(e.step, e.attempt, e.error, e.retry_in_ms) for e in failed] == [
        ("create_database", 1, REFUSED, 200), ("create_database", 2, REFUSED, 400)]
    # One progress message per step, however many attempts it took.
    assert [t for t, _ in world.messages(saga["saga_id"])].count("provisioning_step_started") == 4


def test_after_the_last_attempt_the_saga_fails_with_a_reason_a_user_can_read(world: World) -> None:
    world.driver.fail_step("create_database", 99)
    saga = world.request("create", "op-fail")
    done = world.runner().run(world.app, saga["saga_id"], world.credentials)
    assert done is not None and done["status"] == "failed"
    assert done["reason"] == f"create_database: {REFUSED}"
    assert world.driver.calls.count("create_database") == 3 and world.sleeps == [0.2, 0.4]
    assert "create_bucket" not in world.driver.calls
    kind, payload = world.messages(saga["saga_id"])[-1]
    assert kind == "provisioning_failed"
    assert payload == {"ref": REF, "operation_id": "op-fail", "operation": "create", "step": "create_database",
                       "reason": f"create_database: {REFUSED}"}
    assert world.names(saga["saga_id"])[-1] == "Failed"
    # A failed saga is finished: running it again does nothing.
    world.runner().run(world.app, saga["saga_id"], world.credentials)
    assert world.driver.calls.count("create_database") == 3


def test_a_permanent_error_fails_at_once_and_unexpected_errors_are_described(world: World) -> None:
    world.driver.fail_step("block_connections", 1, StepError("database x does not exist", permanent=True))
    saga = world.request("pause")
    done = world.runner().run(world.app, saga["saga_id"], world.credentials)
    assert done is not None and done["reason"] == "block_connections: database x does not exist"
    assert world.sleeps == []
    world.driver.fail_step("create_roles", 99, KeyError("boom"))
    saga = world.request("create")
    done = world.runner().run(world.app, saga["saga_id"], world.credentials)
    assert done is not None and done["reason"] == "create_roles: KeyError: 'boom'"


def test_a_failed_pause_is_compensated_before_it_is_recorded(world: World) -> None:
    world.driver.fail_step("backup_database", 99)
    saga = world.request("pause")
    done = world.runner().run(world.app, saga["saga_id"], world.credentials)
    assert done is not None and done["status"] == "failed"
    assert world.driver.compensated == [("pause", ["block_connections"])]


def test_credentials_are_fetched_when_needed_retried_like_a_step_and_never_stored(world: World) -> None:
    world.credentials = FakeCredentials(fail_times=1)
    saga = world.request("create", "op-creds")
    done = world.runner().run(world.app, saga["saga_id"], world.credentials)
    assert done is not None and done["status"] == "succeeded"
    failed = [e for e in world.events(saga["saga_id"]) if isinstance(e, Saga.StepAttemptFailed)]
    assert [(e.step, e.error) for e in failed] == [
        ("create_roles", "could not get the project's credentials from the projects service (no answer within 10 s)")]
    assert world.driver.passwords_seen == [DB_PASS]
    # No secret in any stored event of this store.
    stored = repr([world.app.mapper.to_domain_event(n) for n in world.app.recorder.select_notifications(1, 10_000)])
    assert DB_PASS not in stored and "jwt-secret-never-stored" not in stored


# ---- crashes, resumption, locks -----------------------------------------------------------------

def test_a_crash_mid_step_resumes_at_that_step_without_redoing_completed_ones(world: World) -> None:
    world.driver.fail_step("create_database", 1, Crash())
    saga = world.request("create", "op-crash")
    with pytest.raises(Crash):
        world.runner(name="first").run(world.app, saga["saga_id"], world.credentials)
    assert world.app.get_saga(saga["saga_id"])["current_step"] == "create_database"
    assert uuid.UUID(saga["saga_id"]) in world.app.index.unfinished()

    # A new process: fresh application on the same store, new runner; the reconciler finds it.
    fresh = build(world.settings, in_memory=False) if world.kind == "postgres" else world.app
    if fresh is not world.app:
        fresh.plans = dict(FakeDriver.PLANS)
        fresh.retry = world.app.retry
    try:
        world.driver.calls.clear()
        finished = world.runner(locks=world.new_locks(), name="second").reconcile(fresh, world.credentials)
        assert [f["operation_id"] for f in finished] == ["op-crash"]
        assert finished[0]["status"] == "succeeded" and finished[0]["resumptions"] == 1
        assert world.driver.calls == ["create_database", "create_bucket"]  # steps 1-2 not redone
        # Across both runs: completed steps ran once, the interrupted one again (it is idempotent).
        assert [world.driver.all_calls.count(s) for s in FakeDriver.PLANS["create"]] == [1, 1, 2, 1]
        names = [type(e).__name__ for e in fresh.events.get(uuid.UUID(saga["saga_id"]))]
        assert names.count("Resumed") == 1 and names.count("Succeeded") == 1
        assert names.count("StepStarted") == 4  # the interrupted step is not started twice
        assert uuid.UUID(saga["saga_id"]) not in fresh.index.unfinished()
    finally:
        if fresh is not world.app:
            fresh.close()


def test_a_crash_between_steps_resumes_at_the_next_step(world: World) -> None:
    saga = world.request("create", "op-between")
    runner = world.runner()
    real_save = world.app.save
    saves = []

    def crash_on_third_save(*aggregates: Any, **kw: Any) -> Any:
        saves.append(1)
        if len(saves) == 3:  # the save holding create_roles' completion and the next start
            raise Crash()
        return real_save(*aggregates, **kw)

    world.app.save = crash_on_third_save  # type: ignore[method-assign]
    with pytest.raises(Crash):
        runner.run(world.app, saga["saga_id"], world.credentials)
    world.app.save = real_save  # type: ignore[method-assign]
    world.driver.calls.clear()
    done = world.runner(locks=world.new_locks()).run(world.app, saga["saga_id"], world.credentials)
    assert done is not None and done["status"] == "succeeded"
    # create_roles' completion was never saved: it runs again (idempotent), and nothing before it.
    assert world.driver.calls == ["create_roles", "create_database", "create_bucket"]


def test_a_saga_never_runs_twice_at_once(world: World) -> None:
    saga = world.request("create", "op-lock")
    entered, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    class SlowDriver(FakeDriver):
        def run_step(self, operation: str, step: str, ctx: StepContext) -> dict[str, Any]:
            if step == "create_roles":
                entered.set()
                assert release.wait(10)
            return super().run_step(operation, step, ctx)

    slow = SlowDriver()
    first = SagaRunner(slow, world.locks, retry=world.app.retry, sleep=world.sleeps.append)
    t = threading.Thread(target=lambda: results.setdefault("first", first.run(world.app, saga["saga_id"],
                                                                               world.credentials)))
    t.start()
    try:
        assert entered.wait(10)
        # Another runner (another process, for the PostgreSQL locks) finds it held and skips it.
        other_locks = world.locks if world.kind == "memory" else world.new_locks()
        other = SagaRunner(FakeDriver(), other_locks, retry=world.app.retry)
        assert other.run(world.app, saga["saga_id"], world.credentials) is None
        assert other.reconcile(world.app, world.credentials) == []
    finally:
        release.set()
        t.join(10)
    assert results["first"]["status"] == "succeeded"
    assert slow.calls == list(FakeDriver.PLANS["create"])


def test_history_and_lookups(world: World) -> None:
    world.driver.fail_step("drop_roles", 1)
    saga = world.request("delete", "op-history")
    world.runner().run(world.app, saga["saga_id"], world.credentials)
    history = world.app.saga_history("op-history")
    assert [h["event"] for h in history] == ["Requested", "StepStarted", "StepCompleted", "StepStarted",
                                             "StepAttemptFailed", "StepCompleted", "StepStarted",
                                             "StepCompleted", "Succeeded"]
    assert history[4]["error"] == REFUSED and history[4]["attempt"] == 1
    assert world.app.saga_for_operation("op-history")["status"] == "succeeded"
    with pytest.raises(NotFound):
        world.app.saga_for_operation("no-such-operation")


def test_driver_upkeep_waits_while_sagas_run(world: World) -> None:
    """Upkeep (e.g. building spare databases) is skipped while the runner has sagas running,
    and long upkeep is told to stop as soon as one starts."""
    saga = world.request("create", "op-upkeep")
    entered, release = threading.Event(), threading.Event()

    class SlowDriver(FakeDriver):
        upkeep = 0

        def maintain(self, stop: Any = None) -> dict[str, Any]:
            self.upkeep += 1
            return {"stop_now": stop()}

        def run_step(self, operation: str, step: str, ctx: StepContext) -> dict[str, Any]:
            if step == "create_roles":
                entered.set()
                assert release.wait(10)
            return super().run_step(operation, step, ctx)

    slow = SlowDriver()
    runner = SagaRunner(slow, world.locks, retry=world.app.retry, sleep=world.sleeps.append)
    assert runner.maintain() == {"stop_now": False} and slow.upkeep == 1
    t = threading.Thread(target=runner.run, args=(world.app, saga["saga_id"], world.credentials))
    t.start()
    try:
        assert entered.wait(10)
        assert runner.running == 1
        assert runner.maintain() == {} and slow.upkeep == 1  # not called while the saga runs
    finally:
        release.set()
        t.join(10)
    assert runner.running == 0
    assert runner.maintain() == {"stop_now": False} and slow.upkeep == 2


def test_driver_upkeep_failures_are_logged_not_raised(world: World) -> None:
    class Broken(FakeDriver):
        def maintain(self, stop: Any = None) -> dict[str, Any]:
            raise StepError("could not connect")

    assert SagaRunner(Broken(), world.locks).maintain() == {}
    assert world.runner().maintain() == {}


def test_tenant_health_comes_from_the_driver_for_valid_refs_only(world: World) -> None:
    assert world.runner().check_tenant(REF) == {"db": {"healthy": True, "status": "ACTIVE_HEALTHY"}}
    with pytest.raises(InvalidInput):
        world.runner().check_tenant("../../etc")


def test_retry_policy_doubles_and_caps() -> None:
    p = RetryPolicy(max_attempts=10, base_delay_ms=100, max_delay_ms=1000)
    assert [p.delay_ms(n) for n in range(1, 7)] == [100, 200, 400, 800, 1000, 1000]


def test_sql_index_and_pg_locks_are_what_postgres_worlds_use(pg_settings: Any) -> None:
    app = build(pg_settings)
    try:
        assert isinstance(app.index, SqlSagaIndex)
    finally:
        app.close()
