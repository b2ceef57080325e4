"""The driver port: the infrastructure work behind each provisioning operation.

A driver names, per operation, the ordered steps it takes (`PLANS`) and implements each as a
method of the same name. Every step is idempotent (create-or-get): the saga runs a step
again after a failure or a crash, so running it twice must leave the same result as running
it once. A step returns a small JSON-able dict of facts (never a secret) that the saga
records; it raises StepError with a message the project's owner can read.

The local driver (drivers/local.py) works on this machine's PostgreSQL and an object store;
a Kubernetes driver would implement the same port. Imports the standard library only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, TypedDict


class TenantCredentials(TypedDict):
    """What the projects service hands over for a tenant (over RPC, never in a message)."""

    db_pass: str
    jwt_secret: str


class StepError(Exception):
    """A step failed. The message is shown to the user as the saga's reason, so it says what
    failed in their terms. `permanent`: retrying cannot help (the saga fails at once)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True)
class StepContext:
    """What a step knows about its saga. `credentials` fetches the tenant's secrets when a
    step needs them; they live in memory for that call only."""

    ref: str
    operation_id: str
    credentials: Callable[[], TenantCredentials]
    org: str = ""  # the project's organization slug, when the saga knows it (labels)


class Driver(ABC):
    name: ClassVar[str] = "abstract"
    PLANS: ClassVar[dict[str, tuple[str, ...]]] = {}

    def plan(self, operation: str) -> list[str]:
        try:
            return list(self.PLANS[operation])
        except KeyError:
            raise ValueError(f"driver {self.name} has no plan for operation {operation!r}") from None

    def run_step(self, operation: str, step: str, ctx: StepContext) -> dict[str, Any]:
        """Run one step of a plan. Only names that appear in some plan can be called."""
        if not any(step in plan for plan in self.PLANS.values()):
            raise StepError(f"unknown step {step!r} for driver {self.name}", permanent=True)
        result = getattr(self, step)(ctx)
        return dict(result or {})

    @abstractmethod
    def connection_info(self, ref: str) -> dict[str, Any]:
        """Where the tenant's database and bucket are: db_host, db_port, db_name, db_user, bucket."""

    @abstractmethod
    def check_tenant(self, ref: str) -> dict[str, dict[str, Any]]:
        """Health of each service the driver runs for the tenant, by service name (the
        names of the v1 health route: db, storage...): {healthy, status, error?}."""

    def maintain(self, stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """Periodic upkeep between sagas (e.g. resources kept warm). Returns what it did.
        Long upkeep checks `stop()` between units of work and ends early when it says so
        (sagas have started: they come first)."""
        return {}

    def close(self) -> None:
        """Release what the driver holds open (connections kept for reuse)."""

    def compensate(self, operation: str, ctx: StepContext, completed: list[str]) -> str | None:
        """Undo what a failed saga left half-done, where leaving it would hurt the user
        (e.g. a failed pause must not lock them out). Returns what was done, or None."""
        return None

    def describe_error(self, exc: BaseException) -> str:
        """A readable reason for an unexpected exception out of a step."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
