"""Idempotent consumption: claim an event_id in the same transaction as the effect.

`claim` / `claim_many` insert into `<schema>.processed_messages`; a conflict means the
message was already applied, so the caller skips the effect. `BatchConsumer` is the
high-throughput consumer (no eventlet): it applies a whole batch of messages in one
transaction, acks after commit, and isolates a failing message (retry with backoff, then
dead-letter with its error) without holding up the rest. An infrastructure fault (the
database or the broker away, services.shared.faults) is no message's fault: the batch goes
back to the queue uncounted, the consumer stops consuming, and resumes once the database
answers again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Iterable, Sequence

import amqp
import psycopg

from . import broker
from .contracts import ContractError, parse_message
from .db import connect as db_connect
from .faults import describe, is_infrastructure_error
from .settings import Settings

log = logging.getLogger("consumer")


def claim(cur: psycopg.Cursor, schema: str, consumer: str, event_id: str) -> bool:
    """True if this consumer has not processed `event_id` before (and now has, on commit)."""
    cur.execute(
        f'INSERT INTO "{schema}".processed_messages (consumer, event_id) VALUES (%s, %s) '
        "ON CONFLICT DO NOTHING",
        (consumer, event_id),
    )
    return cur.rowcount == 1


def claim_many(cur: psycopg.Cursor, schema: str, consumer: str, event_ids: Sequence[str]) -> set[str]:
    """The subset of `event_ids` not processed before by this consumer (claimed on commit)."""
    if not event_ids:
        return set()
    cur.execute(
        f'INSERT INTO "{schema}".processed_messages (consumer, event_id) '
        "SELECT %s, e FROM unnest(%s::uuid[]) AS e ON CONFLICT DO NOTHING RETURNING event_id",
        (consumer, list(event_ids)),
    )
    return {str(r[0]) for r in cur.fetchall()}


class DependencyDown(RuntimeError):
    """The database (or the broker) failed under a batch: give it back, pause, resume."""


BatchHandler = Callable[[psycopg.Cursor, list[dict[str, Any]]], None]


class BatchConsumer:
    """Consume `queue` in batches: one transaction per batch, ack after commit.

    `handle(cur, envelopes)` applies the effect of the (already deduplicated) envelopes
    using `cur`, inside the transaction that also claims their event_ids.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        queue: str,
        schema: str,
        bindings: Iterable[tuple[str, str]],
        handle: BatchHandler,
        batch_size: int = 500,
        max_wait: float = 0.005,
        gather_gap: float = 0.0005,
        policy: broker.FailurePolicy | None = None,
        versions: Iterable[int] | None = None,
    ):
        self.settings = settings
        # The contract versions `handle` understands (None: any registered one); newer
        # messages are adapted down to them where the contract has an adapter.
        self.versions = tuple(sorted(set(versions))) if versions is not None else None
        self.queue = queue
        self.schema = schema
        self.bindings = list(bindings)
        self.handle = handle
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.gather_gap = gather_gap
        self.policy = policy or broker.FailurePolicy(settings.consumer_max_attempts, settings.consumer_retry_base_ms)
        self.stopping = threading.Event()
        self.applied = 0
        self.dead_lettered = 0
        self.pauses = 0  # times consumption stopped because a dependency was down

    def stop(self) -> None:
        self.stopping.set()

    def declare(self, channel: amqp.Channel) -> None:
        for exchange, _ in self.bindings:
            producer = exchange.removesuffix(".events")
            broker.declare_exchange(channel, producer)
        broker.declare_consumer_queues(channel, self.queue, self.bindings)

    def run(self) -> None:
        backoff = 0.2
        while not self.stopping.is_set():
            conn = publisher = None
            try:
                with db_connect(self.settings, autocommit=True) as db:
                    conn = broker.connect(self.settings)
                    channel = conn.channel()
                    self.declare(channel)
                    channel.basic_qos(0, self.batch_size * 2, False)
                    buffer: list[amqp.Message] = []
                    channel.basic_consume(self.queue, callback=buffer.append)
                    publisher = broker.ConfirmingPublisher(self.settings)
                    backoff = 0.2
                    while not self.stopping.is_set():
                        self._fill(conn, buffer)
                        if buffer:
                            batch, buffer[:] = list(buffer), []
                            self._process(db, channel, publisher, batch)
            except Exception as exc:  # noqa: BLE001 -- reconnect; unacked messages come back
                if self.stopping.is_set():
                    break
                if isinstance(exc, DependencyDown):
                    # Closing the broker connection (below) gives every unacked message back to
                    # the queue, with its attempts untouched; connecting starts with the
                    # database, so nothing is consumed again until it answers.
                    self.pauses += 1
                    log.warning("consumer %s paused: the database is unavailable (%s); its messages go back "
                                "to the queue uncounted; resuming once it answers (retry in %.1fs)",
                                self.queue, exc, backoff)
                else:
                    log.warning("consumer %s fault: %s; reconnecting in %.1fs", self.queue,
                                broker.describe_exception(exc), backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                for c in (publisher, conn):
                    try:
                        if c is not None:
                            c.close()
                    except Exception:
                        pass

    def _fill(self, conn: amqp.Connection, buffer: list[amqp.Message]) -> None:
        """Wait for a first message (up to 0.5 s), then take what follows it closely: stop at
        the first pause longer than `gather_gap`, after `max_wait`, or when the batch is full.
        Under load the socket already holds plenty, so batches fill at once; under light
        traffic a message waits a fraction of a millisecond for company, not `max_wait`."""
        deadline: float | None = None
        while len(buffer) < self.batch_size and not self.stopping.is_set():
            timeout = 0.5 if deadline is None else min(deadline - time.monotonic(), self.gather_gap)
            if timeout <= 0:
                return
            try:
                conn.drain_events(timeout=timeout)
            except TimeoutError:
                if buffer or deadline is None:
                    return
            if buffer and deadline is None:
                deadline = time.monotonic() + self.max_wait

    def _decode(self, msg: amqp.Message) -> dict[str, Any]:
        try:
            body = json.loads(msg.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ContractError(f"message is not JSON: {exc}") from None
        return parse_message(body, accept=self.versions)

    def _process(self, db: psycopg.Connection, channel: amqp.Channel,
                 publisher: broker.ConfirmingPublisher, batch: list[amqp.Message]) -> None:
        good: list[tuple[amqp.Message, dict[str, Any]]] = []
        settled: list[amqp.Message] = []  # committed or re-routed: never to be given back
        for msg in batch:
            try:
                good.append((msg, self._decode(msg)))
            except ContractError as exc:
                # Malformed: retrying cannot help. Park it with the reason.
                self._fail(publisher, msg, str(exc), permanent=True)
                settled.append(msg)
        try:
            self._apply(db, [env for _, env in good])
        except Exception as exc:  # noqa: BLE001 -- find the culprit one by one
            self._unless_down(db, channel, settled, exc)
            for msg, env in good:
                try:
                    self._apply(db, [env])
                except Exception as exc:  # noqa: BLE001
                    self._unless_down(db, channel, settled, exc)
                    self._fail(publisher, msg, broker.describe_exception(exc))
                settled.append(msg)
        # Everything in the batch is now either committed or re-routed with a confirm.
        channel.basic_ack(batch[-1].delivery_tag, multiple=True)

    @staticmethod
    def _unless_down(db: psycopg.Connection, channel: amqp.Channel, settled: list[amqp.Message],
                     exc: BaseException) -> None:
        """If `exc` is the database (or broker) being down, not the messages' fault: ack what is
        already settled, one by one, and raise DependencyDown (the rest goes back uncounted)."""
        if not (is_infrastructure_error(exc) or db.closed or db.broken):
            return
        for msg in settled:
            channel.basic_ack(msg.delivery_tag)
        raise DependencyDown(describe(exc)) from exc

    def _apply(self, db: psycopg.Connection, envelopes: list[dict[str, Any]]) -> None:
        with db.transaction():
            with db.cursor() as cur:
                fresh = claim_many(cur, self.schema, self.queue, [e["event_id"] for e in envelopes])
                # A redelivered copy can share a batch with its original: apply the first only.
                todo = []
                for e in envelopes:
                    if e["event_id"] in fresh:
                        fresh.discard(e["event_id"])
                        todo.append(e)
                if todo:
                    self.handle(cur, todo)
        self.applied += len(todo)

    def _fail(self, publisher: broker.ConfirmingPublisher, msg: amqp.Message, error: str, *, permanent: bool = False) -> None:
        headers = dict(msg.properties.get("application_headers") or {})
        where = broker.route_failure(publisher, self.queue, msg.body, headers, error, self.policy, permanent=permanent)
        if where == "dead-letter":
            self.dead_lettered += 1
        log.warning("consumer %s: message sent to %s: %s", self.queue, where, error[:300])


def bindings_for(accepts: Iterable[tuple[str, str, int]]) -> list[tuple[str, str]]:
    """Queue bindings for the (producer, event_type, version) contracts a consumer accepts."""
    return sorted({(broker.exchange_name(producer), event_type) for producer, event_type, _ in accepts})


def run_consumer_process(description: str, make: Callable[[Settings, str, int], BatchConsumer],
                         queue: str, batch_size: int, argv: list[str] | None = None) -> None:
    """The main() of a batch-consumer process: arguments, logging, signals, run until stopped."""
    import argparse
    import signal

    from .settings import load_settings

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--queue", default=queue)
    parser.add_argument("--batch-size", type=int, default=batch_size)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    consumer = make(load_settings(), args.queue, args.batch_size)
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop())
    signal.signal(signal.SIGINT, lambda *_: consumer.stop())
    print(f"{description} on queue {args.queue}", flush=True)
    consumer.run()
