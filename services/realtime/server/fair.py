"""Per-project delivery queues with fair scheduling: each project's fan-outs wait in its own
queue, and one dispatcher serves the projects with work in turn, at most `quantum` deliveries
per turn (deficit round robin on deliveries, not on messages). A project flooding its
channels therefore delays its own messages only: another project's next message is delivered
after at most one turn of each busy project.

A delivery puts an encoded frame on a socket's own bounded send queue (the socket's writer
task drains it), so a slow client never holds the dispatcher either.

Standard library only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Callable, Protocol, Sequence

log = logging.getLogger("realtime.fair")


class Target(Protocol):
    def deliver(self, frame_for: Callable[[str], Any]) -> bool:
        """Queue this fan-out's frame (encoded for the target's vsn) on its socket; True when
        something was queued (it counts as a message sent)."""
        ...


class FanOut:
    """One message to many channels, delivered a slice at a time."""

    __slots__ = ("targets", "make", "at", "frames", "on_sent")

    def __init__(self, targets: Sequence[Target], make: Callable[[str], Any],
                 on_sent: Callable[[int], None] | None = None):
        self.targets = targets
        self.make = make  # vsn -> encoded frame (str | bytes | None)
        self.at = 0
        self.frames: dict[str, Any] = {}
        self.on_sent = on_sent

    def frame_for(self, vsn: str) -> Any:
        if vsn not in self.frames:
            self.frames[vsn] = self.make(vsn)
        return self.frames[vsn]

    def run(self, budget: int) -> int:
        end = min(len(self.targets), self.at + budget)
        sent = 0
        for target in self.targets[self.at:end]:
            try:
                if target.deliver(self.frame_for):
                    sent += 1
            except Exception:  # noqa: BLE001 -- one broken socket must not stop the others
                log.exception("delivery failed")
        done = end - self.at
        self.at = end
        if sent and self.on_sent is not None:
            self.on_sent(sent)
        return done

    @property
    def finished(self) -> bool:
        return self.at >= len(self.targets)


class FairQueue:
    def __init__(self, quantum: int = 256, max_pending: int = 10_000):
        self.quantum = quantum
        self.max_pending = max_pending  # fan-outs one project may have waiting; more are dropped
        self.queues: dict[str, deque[FanOut]] = {}
        self.turns: deque[str] = deque()
        self.wake = asyncio.Event()
        self.dropped: dict[str, int] = {}

    def put(self, project: str, job: FanOut) -> bool:
        q = self.queues.get(project)
        if q is None:
            q = self.queues[project] = deque()
            self.turns.append(project)
        if len(q) >= self.max_pending:
            self.dropped[project] = self.dropped.get(project, 0) + 1
            return False
        q.append(job)
        self.wake.set()
        return True

    def pending(self, project: str) -> int:
        return len(self.queues.get(project, ()))

    def turn(self) -> str | None:
        """Serve one project's turn; returns which (None when nothing waits)."""
        if not self.turns:
            return None
        project = self.turns.popleft()
        q = self.queues[project]
        budget = self.quantum
        while q and budget > 0:
            job = q[0]
            budget -= job.run(budget)
            if job.finished:
                q.popleft()
        if q:
            self.turns.append(project)
        else:
            del self.queues[project]
        return project

    async def run(self) -> None:
        while True:
            if not self.turns:
                self.wake.clear()
                await self.wake.wait()
                continue
            self.turn()
            await asyncio.sleep(0)  # let sockets write and read between turns
