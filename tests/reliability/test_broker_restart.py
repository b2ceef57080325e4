"""Restart RabbitMQ (`rabbitmqctl stop_app` / `start_app`) while events flow: the relay and
the consumer reconnect by themselves and every effect still happens exactly once.

The broker restarted is a private node this test starts for itself (broker_node.py), never
the machine's RabbitMQ, which other test runs and checkouts share. Whatever happens in the
test, the node is halted and its data removed afterwards.
"""

from __future__ import annotations

import subprocess
import time
from typing import Iterator

import pytest

from services.shared.db import bootstrap, drop_database
from tests.conftest import ARTIFACTS, make_test_settings

from .broker_node import SCRIPTS, BrokerNode
from .conftest import Backbone, assert_exactly_once, new_run, wait_for

N = 5000
BATCH = 100

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(SCRIPTS is None, reason="RabbitMQ's server scripts are not installed here"),
]


def finish(p: subprocess.Popen[bytes], timeout: float = 60) -> None:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"{p.args} failed: {out.decode(errors='replace')}"


@pytest.fixture
def node() -> Iterator[BrokerNode]:
    """A RabbitMQ node of this test's own, halted afterwards whatever happened."""
    s = make_test_settings("rmq")
    n = BrokerNode(ARTIFACTS / "logs" / s.db_name / "rabbitmq", vhost=s.amqp_vhost)
    try:
        n.start()
        yield n
    finally:
        n.stop()


@pytest.fixture
def backbone(node: BrokerNode) -> Iterator[Backbone]:
    """The probe pipeline on a fresh database (the machine's PostgreSQL) and the private node."""
    s = make_test_settings("rel").with_overrides(**node.settings_overrides())
    bootstrap(s)
    b = Backbone(s)
    try:
        yield b
    finally:
        b.stop_all()
        drop_database(s)


@pytest.mark.timeout(240)
def test_broker_restart_mid_stream_applies_each_event_once(node: BrokerNode, backbone: Backbone) -> None:
    run = new_run()
    pending = [list(range(i, i + BATCH)) for i in range(0, N, BATCH)]

    def write_next(limit_left: int) -> None:
        if pending and limit_left > 0:
            backbone.write(run, pending.pop(0))

    backbone.start_consumer()
    backbone.start_relay()
    for _ in range(10):
        write_next(1)
    wait_for("the first events to arrive", lambda: backbone.applied_count(run) > 0)

    # Stop the broker while the writer keeps writing (stop_app runs in the background).
    stopping = node.ctl_background("stop_app")
    written = 0
    while stopping.poll() is None:
        write_next(15 - written)
        written += 1
        time.sleep(0.1)
    finish(stopping)
    assert not node.answers()
    during_outage = backbone.applied_count(run)
    for _ in range(5):
        write_next(1)  # the store keeps taking commands; the outbox holds them

    # Start it again, still writing; the relay and consumer must find their way back alone.
    starting = node.ctl_background("start_app")
    written = 0
    while starting.poll() is None:
        write_next(10 - written)
        written += 1
        time.sleep(0.1)
    finish(starting)
    wait_for("RabbitMQ to answer again", node.answers, timeout=60, interval=0.2)
    while pending:
        write_next(1)

    effects = backbone.settle(run, N, timeout=90)
    assert_exactly_once(effects, range(N))
    assert during_outage < N, "the outage came after the stream had finished"
    # Nobody restarted them: they reconnected on their own after seeing the fault.
    assert backbone.relay.starts == 1 and backbone.consumer.starts == 1
    assert "fault" in backbone.relay.log(), "relay never noticed the outage"
    assert "fault" in backbone.consumer.log(), "consumer never noticed the outage"
