"""The realtime server's per-project fair queue (services/realtime/server/fair.py): one
project's flood of fan-outs cannot starve another project's delivery."""

from __future__ import annotations

from typing import Any, Callable

from services.realtime.server.fair import FairQueue, FanOut


class Sink:
    """A socket that records what it was given, in order, across every project."""

    def __init__(self, log: list[str], name: str):
        self.log = log
        self.name = name
        self.vsn = "1.0.0"

    def deliver(self, frame_for: Callable[[str], Any]) -> bool:
        self.log.append(f"{self.name}:{frame_for(self.vsn)}")
        return True


def test_a_flooding_project_does_not_starve_another() -> None:
    log: list[str] = []
    q = FairQueue(quantum=100)
    flood_targets = [Sink(log, "a") for _ in range(500)]
    for i in range(200):  # project A: 200 messages to 500 subscribers = 100,000 deliveries queued
        q.put("a" * 20, FanOut(flood_targets, lambda vsn, i=i: f"m{i}"))
    q.put("b" * 20, FanOut([Sink(log, "b")], lambda vsn: "hello"))  # then B's one message
    while q.turn() is not None and "b:hello" not in log:
        pass
    # B waited at most one turn of A (the quantum), not A's 100,000 deliveries.
    assert log.index("b:hello") <= 100, log.index("b:hello")
    while q.turn() is not None:
        pass
    assert len(log) == 200 * 500 + 1  # and A lost nothing


def test_each_frame_is_encoded_once_per_serializer_version() -> None:
    made: list[str] = []

    class Client:
        def __init__(self, vsn: str):
            self.vsn = vsn

        def deliver(self, frame_for: Callable[[str], Any]) -> bool:
            return frame_for(self.vsn) is not None

    def make(vsn: str) -> str:
        made.append(vsn)
        return vsn

    sent: list[int] = []
    q = FairQueue(quantum=3)
    q.put("c" * 20, FanOut([Client("1.0.0"), Client("2.0.0")] * 5, make, on_sent=sent.append))
    while q.turn() is not None:
        pass
    assert sorted(made) == ["1.0.0", "2.0.0"] and sum(sent) == 10


def test_a_project_over_its_pending_bound_drops_its_own_fanouts_only() -> None:
    q = FairQueue(quantum=10, max_pending=3)
    assert all(q.put("a" * 20, FanOut([], lambda vsn: "x")) for _ in range(3))
    assert q.put("a" * 20, FanOut([], lambda vsn: "x")) is False
    assert q.put("b" * 20, FanOut([], lambda vsn: "x")) is True
    assert q.dropped == {"a" * 20: 1}
