"""Poison messages on the batch consumer: a handler that keeps failing is retried with
backoff, then parked in `<queue>.dlq` with its error; a malformed message is parked at
once; neither blocks the queue, and nothing is dropped silently."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest

from services.shared import broker
from services.shared.contracts import OutgoingMessage, build_message, event_id_for

from .conftest import PROBE_QUEUE, Backbone, assert_exactly_once, new_run, wait_for

DLQ = broker.dead_letter_queue(PROBE_QUEUE)
RETRY = broker.retry_queue(PROBE_QUEUE)
ATTEMPTS = 3
RETRY_BASE_MS = 2000  # the poison needs >= 2 + 4 s to be dead-lettered: time to see others pass it


@pytest.mark.timeout(90)
@pytest.mark.backbone_settings(consumer_max_attempts=ATTEMPTS, consumer_retry_base_ms=RETRY_BASE_MS)
def test_failing_event_is_retried_then_dead_lettered_and_the_queue_keeps_flowing(backbone: Backbone) -> None:
    run = new_run()
    n, poison = 2000, {150, 1234}
    backbone.start_consumer()
    backbone.start_relay()
    for i in range(0, n, 250):
        backbone.write(run, list(range(i, i + 250)), fail_seqs=frozenset(poison))

    # Every other event is applied while the poison is still being retried.
    wait_for("the healthy events", lambda: backbone.applied_count(run) >= n - len(poison))
    assert backbone.ready(DLQ) == 0, "healthy events waited for the poison to be dead-lettered"

    # After its attempts the poison is parked with its error, not dropped and not applied.
    wait_for("both poison events in the DLQ", lambda: backbone.ready(DLQ) == len(poison), timeout=30)
    parked = backbone.take_all(DLQ)
    seqs = set()
    for headers, body in parked:
        envelope = json.loads(body)
        seq = envelope["payload"]["seq"]
        seqs.add(seq)
        assert headers["x-attempts"] == ATTEMPTS
        assert f"PoisonProbe: probe seq {seq} asked to fail" in headers["x-last-error"]
        assert headers["x-original-queue"] == PROBE_QUEUE
    assert seqs == poison
    assert backbone.ready(RETRY) == 0

    effects = backbone.settle(run, n - len(poison))
    assert_exactly_once(effects, set(range(n)) - poison)


def probe_message(run: str, seq: int, **changes: object) -> dict[str, object]:
    out = OutgoingMessage("probe_recorded", 1, {"run_id": run, "seq": seq, "sent_at": 0.0})
    message = build_message(out, event_id=event_id_for("probe", uuid.uuid4(), 1), producer="probe",
                            producer_position=1, occurred_at=datetime.now(timezone.utc))
    message.update(changes)
    return message


@pytest.mark.timeout(60)
@pytest.mark.backbone_settings(consumer_max_attempts=ATTEMPTS, consumer_retry_base_ms=RETRY_BASE_MS)
def test_malformed_messages_are_dead_lettered_at_once(backbone: Backbone) -> None:
    run = new_run()
    backbone.start_consumer()
    backbone.start_relay()
    good = probe_message(run, 0)
    no_id = probe_message(run, 0)
    del no_id["event_id"]
    bad_payload = probe_message(run, 0)
    bad_payload["payload"] = {"run_id": run, "seq": -1, "sent_at": 0.0}
    malformed = {
        b"{this is not json": "not JSON",
        b"\xff\xfe\x00": "not JSON",
        b"[1, 2, 3]": "not a JSON object",
        json.dumps(no_id).encode(): "envelope invalid",
        json.dumps(probe_message(run, 0, event_type="no_such_event")).encode(): "no contract for no_such_event",
        json.dumps(bad_payload).encode(): "payload invalid",
    }
    for body in malformed:
        backbone.publish_raw(PROBE_QUEUE, body)
    backbone.publish_raw(PROBE_QUEUE, json.dumps(good).encode())  # the queue must go on past them
    backbone.write(run, list(range(1, 100)))

    wait_for("the malformed messages in the DLQ", lambda: backbone.ready(DLQ) == len(malformed), timeout=30)
    parked = dict((body, headers) for headers, body in backbone.take_all(DLQ))
    assert set(parked) == set(malformed)
    for body, reason in malformed.items():
        headers = parked[body]
        assert headers["x-attempts"] == 1, "malformed messages must be parked at once, not retried"
        assert reason in headers["x-last-error"], headers["x-last-error"]
    assert backbone.ready(RETRY) == 0

    effects = backbone.settle(run, 100)
    assert_exactly_once(effects, range(100))
