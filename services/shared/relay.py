"""Outbox relay: a service's notification log -> versioned contract messages -> RabbitMQ.

Runs without eventlet (one thread per producing service). For each producer it reads new
notifications in order, maps each public domain event to its contract message (the
service's `outbox.to_message`), publishes them persistent to `<producer>.events` with
publisher confirms, and records its position only after every confirm up to it. Publishing
never waits for confirms: new events go out while earlier ones are still being confirmed
(up to `max_in_flight` batches), and the position follows the confirms, recorded every
`save_interval` at most. It wakes on the
store's LISTEN/NOTIFY, so latency is not a poll interval. Publishing is at least once:
after a crash the unconfirmed (or confirmed but not yet recorded) tail is sent again with
the same event_ids, and consumers drop the duplicates.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import select
import signal
import threading
import time
from collections import deque
from typing import Any, NamedTuple

import psycopg

from . import broker
from .contracts import build_message, event_id_for
from .db import connect as db_connect
from .eventstore import events_channel, open_application
from .outbox import RelaySpec
from .settings import Settings, load_settings

log = logging.getLogger("relay")

# Producers whose store the relay reads, by name -> module exposing RELAY (a RelaySpec).
PRODUCERS: dict[str, str] = {
    "orgs": "services.orgs.outbox",
    "projects": "services.projects.outbox",
    "provisioner": "services.provisioner.outbox",
    "functions": "services.functions.outbox",
    "billing": "services.billing.outbox",
    "metering": "services.metering.outbox",
    "realtime": "services.realtime.outbox",
    "gateway": "gateway.usage_outbox",
    "probe": "services.shared.probe_outbox",
}


def load_spec(producer: str) -> RelaySpec:
    spec = importlib.import_module(PRODUCERS[producer]).RELAY
    assert isinstance(spec, RelaySpec)
    return spec


def message_for(spec: RelaySpec, domain_event: Any, position: int) -> tuple[str, dict[str, Any]] | None:
    """The contract message one stored event becomes: (routing key, envelope), or None if
    the event is private. The relay and `platformctl events replay` both use this, so a
    replayed message is the very message the relay published (same event_id)."""
    out = spec.to_message(domain_event)
    if out is None:
        return None
    message = build_message(
        out,
        event_id=event_id_for(spec.producer, domain_event.originator_id, domain_event.originator_version),
        producer=spec.producer,
        producer_position=position,
        occurred_at=domain_event.timestamp,
    )
    return out.event_type, message


def position_key(producer: str) -> str:
    """The relay's row in `<schema>.relay_position` (platformctl reads it for relay lag)."""
    return f"{producer}.outbox"


def relay_connection_name(producer: str) -> str:
    """The application_name of a running relay's database connection (see `platformctl status`)."""
    return f"relay:{producer}"


class InFlight(NamedTuple):
    """A published batch awaiting its confirms."""

    last_tag: int  # delivery tag of its last message
    position: int  # notification id of its last event
    sent_at: float  # monotonic


class Relay:
    def __init__(self, spec: RelaySpec, settings: Settings, *, batch_size: int = 1000, max_in_flight: int = 8,
                 save_interval: float = 0.05, confirm_timeout: float = 30.0):
        self.spec = spec
        self.settings = settings
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        # Record the confirmed position at most this often: each save is a commit (an fsync),
        # which at one event per NOTIFY would double the store's commits. The price is a
        # few more duplicates (dropped by consumers) after a crash.
        self.save_interval = save_interval
        self.confirm_timeout = confirm_timeout
        self.app = open_application(spec.application, settings, pool_size=1, max_overflow=0)
        self.schema = spec.application.name
        self.relay_name = position_key(spec.producer)
        self.published = 0
        self.stopping = threading.Event()

    # -- position ---------------------------------------------------------------------------
    def load_position(self, conn: psycopg.Connection) -> int:
        row = conn.execute(
            f'SELECT position FROM "{self.schema}".relay_position WHERE relay = %s', (self.relay_name,)
        ).fetchone()
        return int(row[0]) if row else 0

    def save_position(self, conn: psycopg.Connection, position: int) -> None:
        conn.execute(
            f'INSERT INTO "{self.schema}".relay_position (relay, position) VALUES (%s, %s) '
            "ON CONFLICT (relay) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
            (self.relay_name, position),
        )

    # -- relaying ---------------------------------------------------------------------------
    def publish_batch(self, publisher: broker.ConfirmingPublisher, notifications: list[Any]) -> None:
        exchange = broker.exchange_name(self.spec.producer)
        for n in notifications:
            routed = message_for(self.spec, self.app.mapper.to_domain_event(n), n.id)
            if routed is None:
                continue  # private domain event: stays inside the service
            routing_key, message = routed
            publisher.publish(exchange, routing_key, broker.encode(message), message_id=message["event_id"])
        publisher.flush()
        self.published += len(notifications)

    def pump(self, conn: psycopg.Connection, publisher: broker.ConfirmingPublisher, position: int) -> None:
        """Relay from `position` (recorded, all confirmed) until stopped.

        `conn` is LISTENing on the store's channel. Each turn: publish what is new (unless
        too much is unconfirmed), take in the confirms that have arrived, record the position
        they reached (at most every `save_interval`), then sleep until a NOTIFY or a confirm
        arrives or a save is due.
        """
        sent = confirmed = saved = position
        in_flight: deque[InFlight] = deque()
        pending = True  # the log may hold events after `sent`
        last_save = time.monotonic()
        while not self.stopping.is_set():
            if pending and len(in_flight) < self.max_in_flight:
                notifications = self.select_after(sent)
                if notifications:
                    self.publish_batch(publisher, notifications)
                    sent = notifications[-1].id
                    in_flight.append(InFlight(publisher.last_tag, sent, time.monotonic()))
                # A short batch means the log was drained: what comes next will NOTIFY.
                pending = len(notifications) >= self.batch_size
            publisher.collect_confirms()  # a nack raises: reconnect, resend from `saved`
            through = publisher.confirmed_through()
            while in_flight and in_flight[0].last_tag <= through:
                confirmed = in_flight.popleft().position
            now = time.monotonic()
            if in_flight and now - in_flight[0].sent_at > self.confirm_timeout:
                raise broker.PublishError(f"publishes not confirmed within {self.confirm_timeout}s")
            if confirmed > saved and now - last_save >= self.save_interval:
                self.save_position(conn, confirmed)
                saved, last_save = confirmed, now
            # NOTIFYs that came in while the connection ran the save.
            for _ in conn.notifies(timeout=0):
                pending = True
            if pending and len(in_flight) < self.max_in_flight:
                continue
            # Sleep until the store has news (a NOTIFY), the broker sends confirms, or a
            # deferred save is due.
            if confirmed > saved:
                timeout = max(last_save + self.save_interval - now, 0.0)
            else:
                timeout = 0.2 if in_flight else 1.0
            ready, _, _ = select.select([conn.fileno(), publisher.fileno()], [], [], timeout)
            for _ in conn.notifies(timeout=0):
                pending = True
            if not ready and confirmed == saved:
                pending = True  # a safety net: read the log now and then even without a NOTIFY
        # Stopping: record what the broker has confirmed so a restart resends little.
        if in_flight:
            publisher.wait_for_confirms(timeout=5.0)
            confirmed = sent
        if confirmed > saved:
            self.save_position(conn, confirmed)

    def select_after(self, position: int) -> list[Any]:
        return list(self.app.recorder.select_notifications(
            start=position, limit=self.batch_size, inclusive_of_start=False
        ))

    def run(self) -> None:
        """Relay until stopped; reconnects with backoff after any broker or database fault."""
        backoff = 0.2
        while not self.stopping.is_set():
            publisher = None
            try:
                name = relay_connection_name(self.spec.producer)
                with db_connect(self.settings, autocommit=True, application_name=name) as conn:
                    conn.execute(f"LISTEN {events_channel(self.spec.application)}")
                    publisher = broker.ConfirmingPublisher(self.settings)
                    broker.declare_exchange(publisher.channel, self.spec.producer)
                    position = self.load_position(conn)
                    log.info("relay %s started at position %d", self.spec.producer, position)
                    backoff = 0.2
                    self.pump(conn, publisher, position)
            except Exception as exc:  # noqa: BLE001 -- keep relaying; say why loudly
                if self.stopping.is_set():
                    break
                log.warning("relay %s fault: %s; reconnecting in %.1fs", self.spec.producer,
                            broker.describe_exception(exc), backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                if publisher is not None:
                    publisher.close()

    def stop(self) -> None:
        self.stopping.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Relay service outboxes to RabbitMQ")
    parser.add_argument("producers", nargs="*", default=list(PRODUCERS), help="producers to relay (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = load_settings()
    relays = [Relay(load_spec(p), settings) for p in args.producers]
    threads = [threading.Thread(target=r.run, name=f"relay-{r.spec.producer}", daemon=True) for r in relays]
    done = threading.Event()

    def stop(*_: Any) -> None:
        for r in relays:
            r.stop()
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for t in threads:
        t.start()
    print(f"relay running for: {', '.join(args.producers)}", flush=True)
    done.wait()
    for t in threads:
        t.join(timeout=5)


if __name__ == "__main__":
    main()
