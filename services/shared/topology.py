"""The broker's event topology as this release declares it, and the upgrade to it.

Each producer's `<producer>.events` exchange has an alternate exchange (broker.declare_exchange)
so that an event no queue is bound for is kept, not dropped. RabbitMQ fixes an exchange's
arguments when it is first declared and refuses any declaration with other ones, so an
exchange an earlier release declared (without the alternate exchange) must be rebuilt once:
`ensure_event_exchanges` copies its bindings (management API), deletes it, declares it anew
and binds everything again. `platform-run` runs it before starting any process, and so does
`platformctl upgrade migrate`; no publisher runs meanwhile (the relay starts last).
"""

from __future__ import annotations

import logging
from typing import Iterable

import amqp

from . import broker
from .rabbitadmin import RabbitAdmin
from .settings import Settings

log = logging.getLogger("platform.topology")


def ensure_event_exchanges(settings: Settings, producers: Iterable[str]) -> list[str]:
    """Declare every producer's exchange with its alternate exchange; returns the exchanges
    that had to be rebuilt (declared by an older release)."""
    rebuilt: list[str] = []
    conn = broker.connect(settings)
    try:
        for producer in producers:
            channel = conn.channel()
            try:
                broker.declare_exchange(channel, producer)
                channel.close()
                continue
            except amqp.exceptions.PreconditionFailed:
                pass  # the refusal closed the channel
            name = broker.exchange_name(producer)
            bindings = RabbitAdmin(settings).bindings_of_exchange(name)
            channel = conn.channel()
            channel.exchange_delete(name)
            broker.declare_exchange(channel, producer)
            for b in bindings:
                if b.get("destination_type") == "exchange":
                    channel.exchange_bind(b["destination"], name, b["routing_key"], arguments=b.get("arguments") or None)
                else:
                    channel.queue_bind(b["destination"], name, b["routing_key"], arguments=b.get("arguments") or None)
            channel.close()
            log.warning("rebuilt exchange %s with its alternate exchange %s (%d binding(s) restored)", name,
                        broker.unrouted_name(producer), len(bindings))
            rebuilt.append(name)
    finally:
        conn.close()
    return rebuilt
