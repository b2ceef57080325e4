"""Event store wiring: an eventsourcing Application per service, on PostgreSQL in its own schema.

`open_application(cls, settings)` is the one way a process gets its store. Tests may pass
`in_memory=True` to run the same application on eventsourcing's POPO store.
"""

from __future__ import annotations

from typing import TypeVar

from eventsourcing.application import Application

from .db import ensure_schema
from .settings import Settings

A = TypeVar("A", bound=Application)


def open_application(cls: type[A], settings: Settings, *, in_memory: bool = False) -> A:
    """Create the service's application on its schema; the schema name is the app's name."""
    if in_memory:
        return cls(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ensure_schema(settings, cls.name)
    return cls(env=settings.eventstore_env(cls.name))


def events_channel(cls: type[Application]) -> str:
    """The LISTEN/NOTIFY channel eventsourcing notifies on after inserting events."""
    return f"{cls.name.lower()}_events"
