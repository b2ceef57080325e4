"""provisioner domain: the Saga aggregate, one per operation on a tenant's infrastructure
(create / pause / restore / delete), and the retry policy its steps follow.

Imports eventsourcing.domain and the standard library only. Rules live in plain methods
that check, then trigger a private `@event` method whose body only changes state (it runs
again on every rebuild, so it must never check or do I/O).

A saga's id is uuid5 of the request's `operation_id`, so a redelivered request finds the
saga it already started instead of starting a second one. Its plan (the ordered step names)
is fixed when it starts and recorded in its first event: a saga resumed after an upgrade
follows the plan it began with.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from eventsourcing.domain import Aggregate, event

NAMESPACE = uuid.UUID("5b8e2f4c-7a1d-4c3e-9b6f-0d2a8e4c6f19")
OPERATIONS = ("create", "pause", "restore", "delete")
Meta = dict[str, Any]


class RuleViolation(Exception):
    """A command would break the saga's invariants (a bug in its runner, never user input)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a step is tried and how long to wait between tries (exponential backoff)."""

    max_attempts: int = 5
    base_delay_ms: int = 200
    max_delay_ms: int = 10_000

    def delay_ms(self, failed_attempts: int) -> int:
        """The wait after the `failed_attempts`-th failure: base, 2*base, 4*base... capped."""
        return min(self.base_delay_ms * (1 << max(failed_attempts - 1, 0)), self.max_delay_ms)


class Saga(Aggregate):
    """One operation on one tenant: an ordered plan of idempotent steps run to an outcome."""

    @staticmethod
    def create_id(operation_id: str, **_: Any) -> uuid.UUID:
        return uuid.uuid5(NAMESPACE, "saga:" + operation_id)

    @event("Requested")
    def __init__(self, operation_id: str, operation: str, ref: str, org_slug: str | None, plan: list[str],
                 max_attempts: int, meta: Meta) -> None:
        self.operation_id = operation_id
        self.operation = operation
        self.ref = ref
        self.org_slug = org_slug
        self.plan = list(plan)
        self.max_attempts = max_attempts
        self.status = "running"  # running | succeeded | failed
        self.current: str | None = None  # the step started and not yet completed
        self.failed_attempts = 0  # failed attempts at the current step
        self.last_error: str | None = None
        self.results: dict[str, dict[str, Any]] = {}  # completed step -> what it reported
        self.outcome: dict[str, Any] | None = None
        self.failed_step: str | None = None
        self.reason: str | None = None
        self.resumptions = 0
        self.meta = meta  # correlation of the request, repeated on every event for the outbox

    # -- queries -------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.status != "running"

    @property
    def next_step(self) -> str | None:
        """The first step of the plan not completed yet (None: every step is done)."""
        for step in self.plan:
            if step not in self.results:
                return step
        return None

    @property
    def attempts_left(self) -> int:
        return self.max_attempts - self.failed_attempts

    def facts(self) -> dict[str, Any]:
        """Everything the completed steps reported, merged in plan order."""
        merged: dict[str, Any] = {}
        for step in self.plan:
            merged.update(self.results.get(step, {}))
        return merged

    # -- commands ------------------------------------------------------------------------------
    def start_step(self, step: str) -> None:
        self._require_running()
        if step != self.next_step:
            raise RuleViolation(f"step {step} is not next (next: {self.next_step})")
        if self.current == step:
            return  # already started (e.g. resumed after a crash): starting it again changes nothing
        self._step_started(step=step, index=self.plan.index(step) + 1, total=len(self.plan), meta=self.meta)

    @event("StepStarted")
    def _step_started(self, step: str, index: int, total: int, meta: Meta) -> None:
        self.current = step
        self.failed_attempts = 0
        self.last_error = None

    def resume(self, runner: str) -> None:
        """A runner picked up this saga after its previous runner stopped mid-way (a crash)."""
        self._require_running()
        self._resumed(step=self.current, runner=runner, meta=self.meta)

    @event("Resumed")
    def _resumed(self, step: str | None, runner: str, meta: Meta) -> None:
        self.resumptions += 1

    def complete_step(self, step: str, result: dict[str, Any]) -> None:
        self._require_running()
        if step != self.current:
            raise RuleViolation(f"step {step} was not started (current: {self.current})")
        self._step_completed(step=step, result=dict(result), meta=self.meta)

    @event("StepCompleted")
    def _step_completed(self, step: str, result: dict[str, Any], meta: Meta) -> None:
        self.results[step] = result
        self.current = None
        self.failed_attempts = 0

    def attempt_failed(self, step: str, error: str, retry_in_ms: int) -> None:
        """Record a failed try of the current step; the runner retries after `retry_in_ms`."""
        self._require_running()
        if step != self.current:
            raise RuleViolation(f"step {step} was not started (current: {self.current})")
        if self.attempts_left <= 1:
            raise RuleViolation(f"step {step} has no attempts left: the saga must fail")
        self._attempt_failed(step=step, attempt=self.failed_attempts + 1, error=error, retry_in_ms=retry_in_ms,
                             meta=self.meta)

    @event("StepAttemptFailed")
    def _attempt_failed(self, step: str, attempt: int, error: str, retry_in_ms: int, meta: Meta) -> None:
        self.failed_attempts = attempt
        self.last_error = error

    def succeed(self, outcome: dict[str, Any]) -> None:
        self._require_running()
        if self.next_step is not None:
            raise RuleViolation(f"cannot succeed: step {self.next_step} is not done")
        self._succeeded(outcome=dict(outcome), meta=self.meta)

    @event("Succeeded")
    def _succeeded(self, outcome: dict[str, Any], meta: Meta) -> None:
        self.status = "succeeded"
        self.outcome = outcome

    def fail(self, step: str, error: str, attempts: int) -> None:
        """Give up. `reason` (shown to the user) names the step and the last error."""
        self._require_running()
        self._failed(step=step, reason=f"{step}: {error}", attempts=attempts, meta=self.meta)

    @event("Failed")
    def _failed(self, step: str, reason: str, attempts: int, meta: Meta) -> None:
        self.status = "failed"
        self.failed_step = step
        self.reason = reason
        self.current = None

    def _require_running(self) -> None:
        if self.finished:
            raise RuleViolation(f"saga already {self.status}")
