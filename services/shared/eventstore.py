"""Event store wiring: an eventsourcing Application per service, on PostgreSQL in its own schema.

`open_application(cls, settings)` is the one way a process gets its store. Tests may pass
`in_memory=True` to run the same application on eventsourcing's POPO store.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError

from .db import ensure_schema
from .errors import Conflict
from .settings import Settings

A = TypeVar("A", bound=Application)


def open_application(cls: type[A], settings: Settings, *, in_memory: bool = False, pool_size: int = 2,
                     max_overflow: int = 6) -> A:
    """Create the service's application on its schema; the schema name is the app's name.

    Readers that only scan the log (relay, operators' tools) pass pool_size=1, max_overflow=0.
    """
    if in_memory:
        return cls(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ensure_schema(settings, cls.name)
    return cls(env=settings.eventstore_env(cls.name, pool_size, max_overflow))


def events_channel(cls: type[Application]) -> str:
    """The LISTEN/NOTIFY channel eventsourcing notifies on after inserting events."""
    return f"{cls.name.lower()}_events"


F = TypeVar("F", bound=Callable[..., Any])


def retry_on_conflict(method: F) -> F:
    """Run an application command again when its save lost a race (another writer saved the
    same aggregate first). Each run reloads the aggregates, so the command re-decides on
    fresh state; after 10 lost races the caller gets a clear Conflict."""

    @functools.wraps(method)
    def run(*args: Any, **kwargs: Any) -> Any:
        for _ in range(10):
            try:
                return method(*args, **kwargs)
            except IntegrityError:
                continue
        raise Conflict("too many concurrent changes to the same thing; try again")

    return run  # type: ignore[return-value]
