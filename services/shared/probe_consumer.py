"""The probe's idempotent consumer process (no eventlet): applies each probe event once.

Effect: a row per (consumer, run_id, seq) in `probe.probe_effects`; `applied` counts how
many times the effect ran, so a test or bench can prove exactly-once (every row 1).
A probe event with `fail: true` raises, to exercise retry and dead-lettering.

Run: python -m services.shared.probe_consumer [--queue probe.sink] [--batch-size 500]
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from .consuming import BatchConsumer, bindings_for, run_consumer_process
from .db import ensure_schema
from .probe import PROBE_EFFECTS_DDL
from .settings import Settings

SCHEMA = "probe"
# The contracts this consumer applies, (producer, event_type, schema_version): its queue
# bindings derive from this, and the contract tests walk it.
ACCEPTS: tuple[tuple[str, str, int], ...] = (("probe", "probe_recorded", 1),)


class PoisonProbe(RuntimeError):
    pass


def make_handler(queue: str) -> Any:
    def handle(cur: psycopg.Cursor, envelopes: list[dict[str, Any]]) -> None:
        now = time.time()
        # (run_id, seq) -> [times seen in this batch, sent_at]; one set-based statement per
        # batch (executemany costs a round of pipeline traffic per row).
        rows: dict[tuple[str, int], list[Any]] = {}
        for e in envelopes:
            p = e["payload"]
            if p.get("fail"):
                raise PoisonProbe(f"probe seq {p['seq']} asked to fail")
            row = rows.setdefault((p["run_id"], p["seq"]), [0, p["sent_at"]])
            row[0] += 1
        cur.execute(
            "INSERT INTO probe.probe_effects (consumer, run_id, seq, applied, sent_at, received_at) "
            "SELECT %s, r, s, n, t, %s FROM unnest(%s::text[], %s::bigint[], %s::int[], %s::float8[]) AS u(r, s, n, t) "
            "ON CONFLICT (consumer, run_id, seq) DO UPDATE SET applied = probe.probe_effects.applied + EXCLUDED.applied",
            (queue, now, [k[0] for k in rows], [k[1] for k in rows], [v[0] for v in rows.values()],
             [v[1] for v in rows.values()]),
        )

    return handle


def make_consumer(settings: Settings, queue: str = "probe.sink", batch_size: int = 500) -> BatchConsumer:
    ensure_schema(settings, SCHEMA, PROBE_EFFECTS_DDL)
    return BatchConsumer(
        settings,
        queue=queue,
        schema=SCHEMA,
        bindings=bindings_for(ACCEPTS),
        handle=make_handler(queue),
        batch_size=batch_size,
    )


def main(argv: list[str] | None = None) -> None:
    run_consumer_process("probe consumer", make_consumer, "probe.sink", 500, argv)


if __name__ == "__main__":
    main()
