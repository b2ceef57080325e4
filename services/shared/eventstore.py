"""Event store wiring: an eventsourcing Application per service, on PostgreSQL in its own schema.

`open_application(cls, settings)` is the one way a process gets its store. Tests may pass
`in_memory=True` to run the same application on eventsourcing's POPO store.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, TypeVar

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError

from .db import ensure_schema
from .errors import Conflict
from .settings import Settings

A = TypeVar("A", bound=Application)


def open_application(cls: type[A], settings: Settings, *, in_memory: bool = False, pool_size: int = 2,
                     max_overflow: int = 6, recorder: type[Any] | None = None) -> A:
    """Create the service's application on its schema; the schema name is the app's name.

    Readers that only scan the log (relay, operators' tools) pass pool_size=1, max_overflow=0.
    `recorder`: a subclass of eventsourcing's PostgreSQL application recorder (e.g. one that
    writes a read model in the events' transaction).
    """
    if in_memory:
        return cls(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    ensure_schema(settings, cls.name)
    env = settings.eventstore_env(cls.name, pool_size, max_overflow)
    if recorder is not None:
        from eventsourcing.utils import get_topic

        env["APPLICATION_RECORDER_TOPIC"] = get_topic(recorder)
    return cls(env=env)


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


class _Pending:
    __slots__ = ("event", "done", "recordings", "error")

    def __init__(self, event: ProcessingEvent[Any]):
        self.event = event
        self.done = False
        self.recordings: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """Mixin for an eventsourcing Application (list it first): `save()` calls made at the
    same time in one process share one transaction.

    Every save takes its events table's lock (so the relay never skips an event), so a
    store's saves run one after another anyway; under load each waits its turn, and each
    turn costs a transaction (round trips, the lock, a NOTIFY, a commit). Here one caller
    writes at a time, and everything queued meanwhile goes in the next transaction: the same
    events, in fewer transactions. A caller returns only once its own events are committed,
    with the outcome it would have had alone: if a shared write fails (say one caller lost a
    race, IntegrityError), each caller's events are written again on their own, so a
    conflict fails only the caller that had it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._gc_queue: list[_Pending] = []
        self._gc_queue_lock = threading.Lock()
        self._gc_write_lock = threading.Lock()  # green under eventlet
        super().__init__(*args, **kwargs)

    def _record(self, processing_event: ProcessingEvent[Any]) -> Any:
        if processing_event.tracking is not None or set(processing_event.saved_kwargs) - {"read_model"}:
            return super()._record(processing_event)  # type: ignore[misc]
        mine = _Pending(processing_event)
        with self._gc_queue_lock:
            self._gc_queue.append(mine)
        with self._gc_write_lock:
            if not mine.done:
                with self._gc_queue_lock:
                    batch, self._gc_queue = self._gc_queue, []
                self._gc_write(batch)
        if not mine.done:  # cannot happen: a writer takes the whole queue
            raise RuntimeError("group commit lost a save")
        if mine.error is not None:
            raise mine.error
        return mine.recordings

    def _gc_write(self, batch: list[_Pending]) -> None:
        try:
            if len(batch) > 1:
                events = [e for p in batch for e in p.event.events]
                # Read-model rows written in the events' transaction (see read_model_recorder).
                rows = [r for p in batch for r in p.event.saved_kwargs.get("read_model", ())]
                try:
                    recordings = self.events.put(events, **({"read_model": rows} if rows else {}))  # type: ignore[attr-defined]
                except Exception:  # noqa: BLE001 -- e.g. one lost a race: write each alone, below
                    pass
                else:
                    repository = self.repository  # type: ignore[attr-defined]
                    at = 0
                    for p in batch:
                        p.recordings = recordings[at:at + len(p.event.events)]
                        at += len(p.event.events)
                        if repository.cache and not repository.fastforward:  # as Application._record
                            for aggregate_id, aggregate in p.event.aggregates.items():
                                repository.cache.put(aggregate_id, aggregate)
                        p.done = True
                    return
            for p in batch:
                try:
                    p.recordings = super()._record(p.event)  # type: ignore[misc]
                except Exception as exc:  # noqa: BLE001 -- handed to the caller it belongs to
                    p.error = exc
                p.done = True
        finally:
            for p in batch:  # interrupted (e.g. the process is stopping): nobody waits forever
                if not p.done:
                    p.error, p.done = RuntimeError("save interrupted"), True
