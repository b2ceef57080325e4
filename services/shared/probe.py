"""The backbone probe: a tiny event-sourced producer and an idempotent consumer's effect.

Operators use it (`platformctl probe`) to check store -> relay -> broker -> consumer end to
end; the benches and reliability tests use the same pieces. Its store is schema `probe`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from .contracts import OutgoingMessage


class ProbeBatch(Aggregate):
    """One aggregate per batch of probe events, so a batch is one atomic save."""

    @event("Started")
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.count = 0

    @event("Recorded")
    def record(self, run_id: str, seq: int, sent_at: float, fail: bool = False) -> None:
        self.count += 1


class ProbeApplication(Application):
    name = "probe"

    def record_batch(self, run_id: str, seqs: list[int], fail_seqs: frozenset[int] = frozenset(),
                     sent_at: float | None = None) -> uuid.UUID:
        """Record `seqs` in one save. `sent_at` (default: now) is when the events count as
        sent; a load generator passes its schedule so lag before the save counts too."""
        batch = ProbeBatch(run_id=run_id)
        now = time.time() if sent_at is None else sent_at
        for s in seqs:
            batch.record(run_id=run_id, seq=s, sent_at=now, fail=s in fail_seqs)
        self.save(batch)
        return batch.id


def to_message(domain_event: Any) -> OutgoingMessage | None:
    if isinstance(domain_event, ProbeBatch.Recorded):
        return OutgoingMessage(
            event_type="probe_recorded",
            schema_version=1,
            payload={"run_id": domain_event.run_id, "seq": domain_event.seq, "sent_at": domain_event.sent_at, "fail": domain_event.fail},
        )
    return None


PROBE_EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.probe_effects (
    consumer text NOT NULL,
    run_id text NOT NULL,
    seq bigint NOT NULL,
    applied integer NOT NULL DEFAULT 1,
    sent_at double precision NOT NULL,
    received_at double precision NOT NULL,
    PRIMARY KEY (consumer, run_id, seq)
);
"""
