"""Outbox relay: a service's notification log -> versioned contract messages -> RabbitMQ.

Runs without eventlet (one thread per producing service). For each producer it reads new
notifications in order, maps each public domain event to its contract message (the
service's `outbox.to_message`), publishes them persistent to `<producer>.events` with
publisher confirms (a whole batch in flight, then one wait), and records its position only
after every confirm. It wakes on the store's LISTEN/NOTIFY, so latency is not a poll
interval. Publishing is at least once: after a crash the unconfirmed tail is sent again
with the same event_ids, and consumers drop the duplicates.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import threading
import time
from typing import Any

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


class Relay:
    def __init__(self, spec: RelaySpec, settings: Settings, *, batch_size: int = 1000):
        self.spec = spec
        self.settings = settings
        self.batch_size = batch_size
        self.app = open_application(spec.application, settings)
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

    # -- one pass ---------------------------------------------------------------------------
    def publish_pending(self, conn: psycopg.Connection, publisher: broker.ConfirmingPublisher, position: int) -> int:
        """Publish everything after `position`, batch by batch. Returns the new position."""
        exchange = broker.exchange_name(self.spec.producer)
        notifications = self.select_after(position)
        while notifications:
            for n in notifications:
                routed = message_for(self.spec, self.app.mapper.to_domain_event(n), n.id)
                if routed is None:
                    continue  # private domain event: stays inside the service
                routing_key, message = routed
                publisher.publish(exchange, routing_key, broker.encode(message), message_id=message["event_id"])
            publisher.flush()
            last = notifications[-1].id
            # Read the next batch while the broker persists and confirms this one; the
            # position still moves only after every confirm.
            following = self.select_after(last) if not self.stopping.is_set() else []
            publisher.wait_for_confirms()
            self.save_position(conn, last)
            self.published += len(notifications)
            position, notifications = last, following
        return position

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
                    while not self.stopping.is_set():
                        position = self.publish_pending(conn, publisher, position)
                        # Sleep until the store says it has new events (or 1 s passes).
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            pass
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
