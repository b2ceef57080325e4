"""The gateway's usage outbox: each batch of counted usage is one stored event, which the
outbox relay publishes as an `api_usage_recorded` message (producer `gateway`).

Imports eventsourcing and the shared contracts only. Why a store in the gateway: a batch is
safe once saved (a database write, even while RabbitMQ is away), the relay publishes it at
least once with a stable event_id, and metering drops a redelivered batch by that id. One
save per batch (about one a second), never one per request.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from services.shared.contracts import OutgoingMessage
from services.shared.outbox import RelaySpec


class UsageBatch(Aggregate):
    """Usage counted between two flushes: a record per project, metric and minute."""

    @event("Recorded")
    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records


class UsageOutbox(Application):
    name = "gateway"

    def record_batch(self, records: list[dict[str, Any]]) -> None:
        self.save(UsageBatch(records=records))


def to_message(e: Any) -> OutgoingMessage | None:
    if isinstance(e, UsageBatch.Recorded):
        return OutgoingMessage("api_usage_recorded", 1, {"records": e.records})
    return None


RELAY = RelaySpec(producer="gateway", application=UsageOutbox, to_message=to_message)
