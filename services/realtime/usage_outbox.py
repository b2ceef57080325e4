"""The realtime server's usage outbox: each batch of counted usage (realtime messages, peak
concurrent connections) is one stored event in the realtime service's own event store, which
the outbox relay publishes as `realtime_usage_recorded` (services/realtime/outbox.py).

Imports eventsourcing only. One save per batch (about once a second), never one per message.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class UsageBatch(Aggregate):
    """Usage counted between two flushes: a record per project, metric and minute."""

    @event("Recorded")
    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records


class RealtimeUsageOutbox(Application):
    name = "realtime"  # the realtime service's store: its relay producer publishes the batches

    def record_batch(self, records: list[dict[str, Any]]) -> None:
        self.save(UsageBatch(records=records))
