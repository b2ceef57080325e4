"""A PostgreSQL outage under a steady stream of events: the batch consumer pauses (its
messages go back to the queue uncounted), resumes once the database answers, and every event
is applied exactly once; nothing is dead-lettered because the database was down.

The consumer reaches PostgreSQL through a TCP proxy the test cuts (never the shared server
itself); the writer and the relay keep using it directly, so events keep arriving on the
queue throughout the outage.
"""

from __future__ import annotations

import sys
import time

import pytest

from services.shared import broker
from tests.conftest import ARTIFACTS
from tests.support import TcpProxy

from .conftest import PROBE_QUEUE, Backbone, Proc, assert_exactly_once, new_run, wait_for

N, BATCH = 3000, 50
DLQ = broker.dead_letter_queue(PROBE_QUEUE)
RETRY = broker.retry_queue(PROBE_QUEUE)


# KNOWN DEFECT (issue 16, open): passes alone (18 of 18 runs), but in both clean-clone CI runs of
# 2026-12-03, within the whole suite, the consumer resumed after the outage and then applied
# nothing for 90 s (65 of 3000 effects). Kept visible (reported as XFAIL/XPASS by -ra) until
# the cause is found; not a pass.
@pytest.mark.xfail(strict=False, reason="known defect: a resumed batch consumer can stall after a database outage "
                                        "when run inside the whole suite (issue 16)")
@pytest.mark.timeout(180)
@pytest.mark.backbone_settings(consumer_max_attempts=3, consumer_retry_base_ms=50)
def test_consumer_pauses_through_a_database_outage_and_dead_letters_nothing(backbone: Backbone) -> None:
    s = backbone.settings
    proxy = TcpProxy(s.db_host, s.db_port)
    try:
        through = s.with_overrides(db_host="127.0.0.1", db_port=proxy.port)
        backbone.consumer = Proc("probe_consumer", [sys.executable, "-m", "services.shared.probe_consumer"],
                                 through, ARTIFACTS / "logs" / s.db_name)
        run = new_run()
        pending = [list(range(i, i + BATCH)) for i in range(0, N, BATCH)]
        backbone.start_consumer()
        backbone.start_relay()
        for _ in range(10):
            backbone.write(run, pending.pop(0))
        wait_for("the first events to be applied", lambda: backbone.applied_count(run) > 0)

        proxy.cut()
        # Events keep coming while the consumer's database is away: they wait on the queue.
        before = backbone.applied_count(run)
        for _ in range(20):
            backbone.write(run, pending.pop(0))
            time.sleep(0.02)  # pacing of the writer: a stream, not one burst
        wait_for("the consumer to pause (or dead-letter events)",
                 lambda: "paused" in backbone.consumer.log() or backbone.ready(DLQ) > 0, timeout=30)
        assert backbone.ready(DLQ) == 0, "an event was dead-lettered because the database was down"
        wait_for("events to wait on the queue", lambda: backbone.ready(PROBE_QUEUE) > 0, timeout=30)
        assert backbone.applied_count(run) < 30 * BATCH, "the outage came after the stream was applied"

        proxy.restore()
        while pending:
            backbone.write(run, pending.pop(0))
        effects = backbone.settle(run, N, timeout=90)
        assert_exactly_once(effects, range(N))
        assert backbone.ready(DLQ) == 0, f"{backbone.ready(DLQ)} events dead-lettered during the outage"
        assert backbone.ready(RETRY) == 0
        assert backbone.consumer.starts == 1, "the consumer had to be restarted"
        assert before < N
    finally:
        proxy.restore()
        proxy.close()
