"""GroupCommit: saves made at the same time in one process share a transaction, and each
caller still gets its own outcome (a conflict fails only the caller that had it)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from services.shared.eventstore import GroupCommit


class Counter(Aggregate):
    @event("Started")
    def __init__(self, name: str) -> None:
        self.name = name
        self.n = 0

    @event("Bumped")
    def bump(self) -> None:
        self.n += 1


class App(GroupCommit, Application):
    name = "gc"


@pytest.fixture
def app() -> Any:
    a = App(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    puts: list[int] = []
    real_put = a.events.put

    def counting_put(events: Any, **kw: Any) -> Any:
        puts.append(len(events))
        return real_put(events, **kw)

    a.events.put = counting_put  # type: ignore[method-assign]
    a.puts = puts  # type: ignore[attr-defined]
    return a


def save_all_at_once(app: Any, groups: list[list[Any]]) -> list[BaseException | None]:
    """Each group saved from its own thread, all queued behind one write before any runs."""
    outcomes: list[BaseException | None] = [None] * len(groups)

    def save(i: int) -> None:
        try:
            app.save(*groups[i])
        except BaseException as exc:  # noqa: BLE001
            outcomes[i] = exc

    with app._gc_write_lock:
        threads = [threading.Thread(target=save, args=(i,)) for i in range(len(groups))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(app._gc_queue) < len(groups):
            assert time.monotonic() < deadline
            time.sleep(0.005)
    for t in threads:
        t.join(10)
    return outcomes


def test_saves_waiting_together_go_in_one_write(app: Any) -> None:
    counters = [Counter(name=f"c{i}") for i in range(6)]
    for c in counters:
        c.bump()
    assert save_all_at_once(app, [[c] for c in counters]) == [None] * 6
    assert app.puts == [12]  # six callers, one write
    for c in counters:
        assert app.repository.get(c.id).n == 1
    notifications = app.recorder.select_notifications(1, 100)
    assert [n.id for n in notifications] == list(range(1, 13))


def test_a_conflict_fails_only_its_own_caller(app: Any) -> None:
    shared = Counter(name="shared")
    app.save(shared)
    first, second = app.repository.get(shared.id), app.repository.get(shared.id)
    first.bump()
    second.bump()  # the same version as first's: only one of them can be stored
    bystander = Counter(name="bystander")
    outcomes = save_all_at_once(app, [[first], [bystander], [second]])
    assert outcomes[1] is None
    assert sorted(type(o).__name__ for o in (outcomes[0], outcomes[2])) == ["IntegrityError", "NoneType"]
    assert app.repository.get(shared.id).n == 1
    assert app.repository.get(bystander.id).name == "bystander"


def test_a_lone_save_behaves_as_before(app: Any) -> None:
    c = Counter(name="alone")
    recordings = app.save(c)
    assert len(recordings) == 1 and app.puts == [1]
    again, twin = app.repository.get(c.id), app.repository.get(c.id)
    again.bump()
    twin.bump()
    app.save(again)
    with pytest.raises(IntegrityError):
        app.save(twin)
    assert app.repository.get(c.id).n == 1
