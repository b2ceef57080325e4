"""Redelivery never doubles an effect: the relay's at-least-once tail (a crash after the
broker's confirms but before its position is recorded) and duplicates arriving side by side
in one consumer batch are both dropped on event_id."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from services.shared import broker
from services.shared.contracts import OutgoingMessage, build_message, event_id_for

from .conftest import PROBE_QUEUE, Backbone, assert_exactly_once, new_run, wait_for

N = 3000


@pytest.mark.timeout(90)
def test_relay_crash_before_recording_its_position_republishes_and_consumer_drops_all(backbone: Backbone) -> None:
    run = new_run()
    backbone.start_consumer()
    backbone.start_relay()
    for i in range(0, N, 500):
        backbone.write(run, list(range(i, i + 500)))
    wait_for("every event applied", lambda: backbone.applied_count(run) == N)
    wait_for("relay caught up", lambda: backbone.relay_position() == backbone.last_position())

    # Model the widest duplicate window: the relay dies after every confirm arrived but
    # before it recorded any position, so on restart it publishes the whole history again.
    backbone.relay.kill9()
    backbone.set_relay_position(0)
    backbone.start_relay()

    effects = backbone.settle(run, N)
    assert_exactly_once(effects, range(N))


@pytest.mark.timeout(60)
def test_duplicates_in_one_batch_are_applied_once(backbone: Backbone) -> None:
    run = new_run()
    # The consumer declares its queue; stop it so the copies pile up and arrive together.
    backbone.start_consumer()
    backbone.consumer.stop()

    publisher = broker.ConfirmingPublisher(backbone.settings)
    try:
        for seq in range(20):
            out = OutgoingMessage("probe_recorded", 1, {"run_id": run, "seq": seq, "sent_at": 0.0})
            message = build_message(out, event_id=event_id_for("probe", uuid.UUID(int=seq + 1), 1),
                                    producer="probe", producer_position=seq + 1,
                                    occurred_at=datetime.now(timezone.utc))
            for _ in range(3):  # at-least-once publishing: the same event_id three times
                publisher.publish("", PROBE_QUEUE, broker.encode(message), message_id=message["event_id"])
        publisher.wait_for_confirms()
    finally:
        publisher.close()
    assert backbone.ready(PROBE_QUEUE) == 60

    backbone.start_consumer()
    backbone.start_relay()  # settle() expects a relay; it has nothing to publish
    effects = backbone.settle(run, 20)
    assert_exactly_once(effects, range(20))
