"""Restart RabbitMQ (`rabbitmqctl stop_app` / `start_app`) while events flow: the relay and
the consumer reconnect by themselves and every effect still happens exactly once.

This stops the whole broker, every vhost on the machine, so it lives alone in this module
and always leaves the broker up again, even when the test fails.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Iterator

import pytest

from .conftest import Backbone, assert_exactly_once, broker_answers, new_run, wait_for

N = 5000
BATCH = 100
RABBITMQCTL = shutil.which("rabbitmqctl")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(RABBITMQCTL is None, reason="rabbitmqctl is not installed here"),
]


def rabbitmqctl(action: str) -> subprocess.Popen[bytes]:
    assert RABBITMQCTL is not None
    return subprocess.Popen([RABBITMQCTL, action], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(p: subprocess.Popen[bytes], timeout: float = 60) -> None:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"{p.args} failed: {out.decode(errors='replace')}"


@pytest.fixture
def broker_restarts(backbone: Backbone) -> Iterator[None]:
    """Whatever happens in the test, the broker is running again afterwards."""
    probe = rabbitmqctl("status")
    out, _ = probe.communicate(timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"cannot control RabbitMQ here: {out.decode(errors='replace')[:300]}")
    try:
        yield
    finally:
        if not broker_answers(backbone.settings):
            subprocess.run([RABBITMQCTL, "start_app"], timeout=120, check=False)  # type: ignore[list-item]
            wait_for("RabbitMQ to answer again", lambda: broker_answers(backbone.settings), timeout=120,
                     interval=0.5)


@pytest.mark.timeout(150)
def test_broker_restart_mid_stream_applies_each_event_once(backbone: Backbone, broker_restarts: None) -> None:
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
    stopping = rabbitmqctl("stop_app")
    written = 0
    while stopping.poll() is None:
        write_next(15 - written)
        written += 1
        time.sleep(0.1)
    finish(stopping)
    assert not broker_answers(backbone.settings)
    during_outage = backbone.applied_count(run)
    for _ in range(5):
        write_next(1)  # the store keeps taking commands; the outbox holds them

    # Start it again, still writing; the relay and consumer must find their way back alone.
    starting = rabbitmqctl("start_app")
    written = 0
    while starting.poll() is None:
        write_next(10 - written)
        written += 1
        time.sleep(0.1)
    finish(starting)
    wait_for("RabbitMQ to answer again", lambda: broker_answers(backbone.settings), timeout=60, interval=0.2)
    while pending:
        write_next(1)

    effects = backbone.settle(run, N, timeout=90)
    assert_exactly_once(effects, range(N))
    assert during_outage < N, "the outage came after the stream had finished"
    # Nobody restarted them: they reconnected on their own after seeing the fault.
    assert backbone.relay.starts == 1 and backbone.consumer.starts == 1
    assert "fault" in backbone.relay.log(), "relay never noticed the outage"
    assert "fault" in backbone.consumer.log(), "consumer never noticed the outage"
