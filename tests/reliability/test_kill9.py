"""kill -9 the outbox relay, the probe consumer, or both while 5,000 events flow; restart
them; every event's effect must exist exactly once (none missing, none applied twice)."""

from __future__ import annotations

import time

import pytest

from .conftest import PROBE_QUEUE, Backbone, Proc, assert_exactly_once, new_run, wait_for

N = 5000
BATCH = 100


def restart(backbone: Backbone, victims: list[Proc]) -> None:
    # The consumer first: its queue must be consumed before we judge the relay's progress.
    for p in sorted(victims, key=lambda p: p is backbone.relay):
        if p is backbone.consumer:
            backbone.start_consumer()
        else:
            p.start()


def kill_when_busy(backbone: Backbone, victims: list[Proc], run: str) -> list[bool]:
    """Restart the victims and kill each again as soon as it is visibly catching up on the
    backlog (the relay has recorded a position, the consumer has committed a batch): the
    worst moment, with its next batch in flight. Returns, per victim, whether work was
    still outstanding when it died.

    The consumer goes first: it can only commit something new while the relay runs (what
    the restarted relay publishes first may all be re-sent duplicates, which change no
    count), whereas the relay records progress whether the consumer runs or not. Killing the
    relay first could leave the consumer waiting for new work that never comes."""
    relay_from, applied_from = backbone.relay_position(), backbone.applied_count(run)
    restart(backbone, victims)
    outstanding = []
    for p in sorted(victims, key=lambda p: p is backbone.relay):
        if p is backbone.relay:
            wait_for("the relay to record progress", lambda: backbone.relay_position() > relay_from,
                     timeout=30, interval=0.005)
            p.kill9()
            outstanding.append(backbone.relay_position() < backbone.last_position())
        else:
            wait_for("the consumer to commit", lambda: backbone.applied_count(run) > applied_from,
                     timeout=30, interval=0.005)
            p.kill9()
            outstanding.append(backbone.ready(PROBE_QUEUE) > 0)
    return outstanding


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("who", ["relay", "consumer", "both"])
def test_kill_9_mid_stream_then_restart_applies_each_event_once(backbone: Backbone, who: str) -> None:
    victims = {"relay": [backbone.relay], "consumer": [backbone.consumer],
               "both": [backbone.relay, backbone.consumer]}[who]
    run = new_run()
    batches = [list(range(i, i + BATCH)) for i in range(0, N, BATCH)]

    # Everything up; events start flowing.
    backbone.start_consumer()
    backbone.start_relay()
    for b in batches[:10]:
        backbone.write(run, b)
    wait_for("the first events to arrive", lambda: backbone.applied_count(run) > 0)

    # Crash 1: mid-stream, while the writer keeps going; a backlog builds up behind it.
    for p in victims:
        p.kill9()
    for b in batches[10:25]:
        backbone.write(run, b)

    # Crashes 2 and 3: restart, and kill again while catching up on the backlog.
    outstanding = kill_when_busy(backbone, victims, run)
    for b in batches[25:35]:
        backbone.write(run, b)
    outstanding += kill_when_busy(backbone, victims, run)

    # Final restart; the rest of the stream flows.
    restart(backbone, victims)
    for b in batches[35:]:
        backbone.write(run, b)
        time.sleep(0.005)

    effects = backbone.settle(run, N)
    assert_exactly_once(effects, range(N))
    assert all(p.starts == 4 for p in victims)
    # A crash with nothing outstanding proves nothing: most of them must have hit mid-work.
    assert sum(outstanding) >= len(outstanding) / 2, f"kills mostly missed the work: {outstanding}"
