"""metering's usage consumer process (no eventlet): folds usage messages into the aggregates.

It consumes the gateway's `api_usage_recorded` batches and the functions service's
`function_invoked` events with the shared BatchConsumer: a batch of messages is claimed by
event_id and folded in one transaction (one ledger row, one upsert per aggregate table),
then acked; a redelivered message is dropped by its claim. A message that cannot be folded
is retried and then dead-lettered on its own, without holding up the rest.

Run: python -m services.metering.consumer [--queue metering.usage] [--batch-size 100]
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from services.shared.consuming import BatchConsumer, bindings_for, run_consumer_process
from services.shared.contracts import ContractError
from services.shared.db import ensure_schema
from services.shared.settings import Settings

from .periods import Record, UsageError
from .store import DDL, SCHEMA, fold

QUEUE = "metering.usage"
# The contracts this consumer folds, (producer, event_type, schema_version): its queue
# bindings derive from this, and the contract tests walk it.
ACCEPTS: tuple[tuple[str, str, int], ...] = (
    ("functions", "function_invoked", 1),
    ("gateway", "api_usage_recorded", 1),
    ("realtime", "realtime_usage_recorded", 1),
)


def records_of(envelope: dict[str, Any]) -> list[Record]:
    """The usage records one checked message carries."""
    key = (envelope["producer"], envelope["event_type"], envelope["schema_version"])
    if key not in ACCEPTS:
        raise ContractError(f"{QUEUE} does not fold {key[0]}/{key[1]} v{key[2]}")
    p = envelope["payload"]
    if key[1] in ("api_usage_recorded", "realtime_usage_recorded"):
        return [(r["org_id"], r["project_ref"], r["metric"], r["minute"], r["quantity"]) for r in p["records"]]
    # function_invoked: one invocation. Refused before any version ran (version null):
    # nothing was executed, so nothing is billed.
    if p["version"] is None:
        return []
    if not envelope["org_id"] or not envelope["project_ref"]:
        raise UsageError("function_invoked without org_id and project_ref in its envelope")
    return [(envelope["org_id"], envelope["project_ref"], "function_invocations", int(p["at"].timestamp()), 1)]


def make_handler(queue: str) -> Any:
    def handle(cur: psycopg.Cursor[Any], envelopes: list[dict[str, Any]]) -> None:
        records: list[Record] = []
        for e in envelopes:
            records += records_of(e)
        # The contracts have checked every field (metric names, non-negative integers).
        fold(cur, uuid.uuid4(), queue, records, [e["event_id"] for e in envelopes])

    return handle


def make_consumer(settings: Settings, queue: str = QUEUE, batch_size: int = 100) -> BatchConsumer:
    ensure_schema(settings, SCHEMA, DDL)
    return BatchConsumer(
        settings,
        queue=queue,
        schema=SCHEMA,
        bindings=bindings_for(ACCEPTS),
        handle=make_handler(queue),
        batch_size=batch_size,
    )


def main(argv: list[str] | None = None) -> None:
    run_consumer_process("metering usage consumer", make_consumer, QUEUE, 100, argv)


if __name__ == "__main__":
    main()
