"""The relay's pipelined loop (`Relay.pump`) with a fake store and a fake broker: it keeps
publishing while confirms are out, but records a position only once every publish up to
it is confirmed, never past it; a nack or a confirm timeout stops it (to reconnect and
resend from the recorded position); stopping records what was confirmed."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pytest

from services.shared import broker
from services.shared.relay import Relay


@dataclass
class Note:
    id: int


class FakeStore:
    """The LISTEN connection and the notification log in one: `fileno` is a real socket so
    the relay can select() on it; `notify()` wakes it as a NOTIFY would."""

    def __init__(self, events: int):
        self.log = [Note(i) for i in range(1, events + 1)]
        self.saved: list[int] = []
        self._r, self._w = socket.socketpair()
        self._notified = False

    def append(self, n: int) -> None:
        start = len(self.log) + 1
        self.log.extend(Note(i) for i in range(start, start + n))
        self._notified = True
        self._w.send(b"!")

    # psycopg.Connection, as far as the relay uses it
    def fileno(self) -> int:
        return self._r.fileno()

    def notifies(self, timeout: float = 0) -> list[object]:
        self._r.setblocking(False)
        try:
            self._r.recv(4096)
        except BlockingIOError:
            pass
        got, self._notified = self._notified, False
        return [object()] if got else []


class FakePublisher:
    """Counts publishes as delivery tags; the test decides what the broker has confirmed."""

    def __init__(self) -> None:
        self.last_tag = 0
        self.confirmed = 0
        self.nack = False
        self._r, self._w = socket.socketpair()

    def confirm_through(self, tag: int) -> None:
        self.confirmed = tag
        self._w.send(b"!")

    def publish(self, n: int) -> None:
        self.last_tag += n

    def fileno(self) -> int:
        return self._r.fileno()

    def confirmed_through(self) -> int:
        return self.confirmed

    def collect_confirms(self) -> None:
        self._r.setblocking(False)
        try:
            self._r.recv(4096)
        except BlockingIOError:
            pass
        if self.nack:
            raise broker.PublishError("broker refused (nack) 1 messages")

    def wait_for_confirms(self, timeout: float = 30.0) -> None:
        self.confirmed = self.last_tag


def make_relay(store: FakeStore, publisher: FakePublisher, **options: Any) -> Relay:
    relay = Relay.__new__(Relay)  # no event store: the log is the fake's
    relay.batch_size = options.get("batch_size", 100)
    relay.max_in_flight = options.get("max_in_flight", 3)
    relay.save_interval = options.get("save_interval", 0.01)
    relay.confirm_timeout = options.get("confirm_timeout", 30.0)
    relay.published = 0
    relay.stopping = threading.Event()
    relay.select_after = (  # type: ignore[method-assign]
        lambda pos: [n for n in store.log if n.id > pos][: relay.batch_size]
    )

    def publish_batch(pub: Any, notes: list[Note]) -> None:
        pub.publish(len(notes))  # one message per event: tag == position
        relay.published += len(notes)

    relay.publish_batch = publish_batch  # type: ignore[method-assign]
    relay.save_position = lambda conn, pos: store.saved.append(pos)  # type: ignore[method-assign]
    relay.unrouted, relay.unrouted_check_interval = 0, 10.0
    relay._next_unrouted_check = float("inf")  # no broker behind the fake to look at
    return relay


def run_in_thread(relay: Relay, store: FakeStore, publisher: FakePublisher,
                  position: int = 0) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            relay.pump(store, publisher, position)  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 -- the test looks at it
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, errors


def eventually(what: str, check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_publishes_ahead_of_confirms_but_records_only_confirmed_positions() -> None:
    store, publisher = FakeStore(events=1000), FakePublisher()
    relay = make_relay(store, publisher, batch_size=100, max_in_flight=3)
    thread, errors = run_in_thread(relay, store, publisher)

    # Nothing confirmed: three batches go out, then the relay waits; nothing is recorded.
    eventually("three batches in flight", lambda: publisher.last_tag == 300)
    time.sleep(0.05)
    assert publisher.last_tag == 300 and store.saved == []

    # Confirms for part of the second batch: the position is the first batch's end.
    publisher.confirm_through(150)
    eventually("position 100 recorded", lambda: store.saved[-1:] == [100])
    eventually("a fourth batch sent", lambda: publisher.last_tag == 400)

    # Everything confirmed as it goes: the relay drains the log and records its end.
    def confirm_all() -> bool:
        publisher.confirm_through(publisher.last_tag)
        return store.saved[-1:] == [1000]

    eventually("position 1000 recorded", confirm_all)
    assert all(p <= c for p, c in zip(store.saved, store.saved[1:])), "position never goes back"

    # A NOTIFY wakes it for new events.
    store.append(5)
    eventually("the new events sent", lambda: publisher.last_tag == 1005)
    publisher.confirm_through(1005)
    eventually("position 1005 recorded", lambda: store.saved[-1:] == [1005])

    relay.stop()
    thread.join(5)
    assert not errors


def test_a_nack_stops_the_pump_without_recording_past_it() -> None:
    store, publisher = FakeStore(events=300), FakePublisher()
    relay = make_relay(store, publisher)
    thread, errors = run_in_thread(relay, store, publisher)
    eventually("batches in flight", lambda: publisher.last_tag == 300)
    publisher.nack = True
    publisher.confirm_through(0)
    thread.join(5)
    assert errors and isinstance(errors[0], broker.PublishError)
    assert store.saved == []


def test_unconfirmed_for_too_long_is_a_fault() -> None:
    store, publisher = FakeStore(events=50), FakePublisher()
    relay = make_relay(store, publisher, confirm_timeout=0.1)
    thread, errors = run_in_thread(relay, store, publisher)
    thread.join(5)
    assert errors and "not confirmed" in str(errors[0])
    assert store.saved == []


@pytest.mark.parametrize("start", [0, 40])
def test_stopping_records_what_the_broker_confirmed(start: int) -> None:
    store, publisher = FakeStore(events=70), FakePublisher()
    publisher.last_tag = publisher.confirmed = start
    relay = make_relay(store, publisher, save_interval=60.0)  # no save before the stop
    thread, errors = run_in_thread(relay, store, publisher, position=start)
    eventually("the tail sent", lambda: publisher.last_tag == 70)  # tags follow positions
    relay.stop()
    thread.join(5)
    assert not errors
    assert store.saved == [70]
