"""An event no queue is bound for is kept and reported, not dropped: the relay publishes to
`<producer>.events`, whose alternate exchange routes it to `<producer>.events.unrouted`; the
relay says so in its log and `platformctl status` lists it by event type. And an exchange an
older release declared without the alternate exchange is rebuilt with its bindings."""

from __future__ import annotations

import json
import subprocess
import sys

import amqp
import pytest

from services.shared import broker
from services.shared.rabbitadmin import RabbitAdmin
from services.shared.runner import ROOT, child_env
from services.shared.topology import ensure_event_exchanges

from .conftest import Backbone, new_run, wait_for

UNROUTED = broker.unrouted_name("probe")


@pytest.mark.timeout(120)
def test_an_event_nobody_binds_is_kept_in_the_unrouted_queue_and_shown(backbone: Backbone) -> None:
    run = new_run()
    backbone.start_relay()  # no consumer: nothing is bound to probe_recorded
    backbone.write(run, list(range(5)))
    last = backbone.last_position()
    wait_for("the relay to pass the events", lambda: backbone.relay_position() >= last, timeout=60)

    kept = wait_for("the events in the unrouted queue", lambda: backbone.ready(UNROUTED) == 5 or None, timeout=30)
    assert kept
    wait_for("the relay to log them", lambda: "published with no queue bound" in backbone.relay.log(), timeout=30)

    out = subprocess.run([sys.executable, "-m", "services.shared.platformctl", "status"], cwd=ROOT,
                         env=child_env(backbone.settings), capture_output=True, text=True, timeout=60).stdout
    section = out.split("unrouted events", 1)[1]
    line = next(x for x in section.splitlines() if x.strip().startswith("probe "))
    assert "5" in line.split() and UNROUTED in line and "probe_recorded 5" in line, out

    # They are the relay's messages, intact, with their routing key.
    messages = backbone.take_all(UNROUTED)
    assert sorted(json.loads(body)["payload"]["seq"] for _, body in messages) == list(range(5))


@pytest.mark.timeout(60)
def test_an_exchange_declared_by_an_older_release_is_rebuilt_with_its_bindings(backbone: Backbone) -> None:
    s = backbone.settings
    conn = broker.connect(s)
    try:
        ch = conn.channel()
        ch.exchange_declare("orgs.events", "topic", durable=True, auto_delete=False)  # as before: no arguments
        ch.queue_declare("old.consumer", durable=True, auto_delete=False)
        ch.queue_bind("old.consumer", "orgs.events", "organization_created")
        with pytest.raises(amqp.exceptions.PreconditionFailed):
            broker.declare_exchange(conn.channel(), "orgs")
    finally:
        conn.close()

    wait_for("the management API to list the binding",
             lambda: any(b["destination"] == "old.consumer" for b in RabbitAdmin(s).bindings_of_exchange("orgs.events")))
    assert ensure_event_exchanges(s, ["orgs", "probe"]) == ["orgs.events"]
    assert ensure_event_exchanges(s, ["orgs", "probe"]) == []  # once

    conn = broker.connect(s)
    try:
        ch = conn.channel()
        broker.declare_exchange(ch, "orgs")  # the new declaration is accepted now
        broker.declare_unrouted_queue(conn, "orgs", ttl_s=60, max_messages=10)
        ch.confirm_select()
        for key in ("organization_created", "brand_new_event"):
            ch.basic_publish(amqp.Message(b"{}", delivery_mode=broker.PERSISTENT), exchange="orgs.events",
                             routing_key=key)
    finally:
        conn.close()
    assert backbone.ready("old.consumer") == 1, "the old binding was lost"
    assert backbone.ready(broker.unrouted_name("orgs")) == 1
