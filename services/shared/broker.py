"""RabbitMQ plumbing on py-amqp (kombu's transport): connections, pipelined confirmed
publishing, topology names, and the retry / dead-letter routing every consumer shares.

Works with or without eventlet (py-amqp uses plain sockets, which eventlet can green).
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from typing import Any, Iterable

import amqp
from amqp.method_framing import frame_writer as amqp_frame_writer

from .settings import Settings

PERSISTENT = 2


def exchange_name(producer: str) -> str:
    return f"{producer}.events"


def retry_queue(queue: str) -> str:
    return f"{queue}.retry"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


def connect(settings: Settings, *, heartbeat: int = 0, frame_writer: Any = amqp_frame_writer) -> amqp.Connection:
    conn = amqp.Connection(
        host=f"{settings.amqp_host}:{settings.amqp_port}",
        userid=settings.amqp_user,
        password=settings.amqp_password,
        virtual_host=settings.amqp_vhost,
        heartbeat=heartbeat,
        connect_timeout=5,
        frame_writer=frame_writer,
    )
    conn.connect()
    return conn


def unrouted_name(producer: str) -> str:
    """The alternate exchange of `<producer>.events`, and the queue bound to it: what no
    queue was bound for is kept there instead of being dropped by the broker."""
    return f"{exchange_name(producer)}.unrouted"


def exchange_arguments(producer: str) -> dict[str, Any]:
    """Every declarer of `<producer>.events` (the relay, consumers, nameko's event handlers,
    integrators) passes these: RabbitMQ refuses a declaration whose arguments differ."""
    return {"alternate-exchange": unrouted_name(producer)}


def declare_exchange(channel: amqp.Channel, producer: str) -> str:
    """`<producer>.events` (topic, durable) with its alternate exchange `<producer>.events.unrouted`
    (fanout, durable): a message no binding matches goes there, not to the void."""
    name = exchange_name(producer)
    channel.exchange_declare(unrouted_name(producer), "fanout", durable=True, auto_delete=False)
    channel.exchange_declare(name, "topic", durable=True, auto_delete=False, arguments=exchange_arguments(producer))
    return name


def declare_unrouted_queue(conn: amqp.Connection, producer: str, *, ttl_s: int, max_messages: int) -> str:
    """The durable queue that keeps `<producer>.events`' unroutable messages, bounded: at most
    `max_messages` (the oldest go first) for at most `ttl_s`. Its bounds are fixed when it is
    first declared; a queue declared with other bounds is used as it is."""
    queue = unrouted_name(producer)
    channel = conn.channel()
    try:
        try:
            channel.queue_declare(queue, durable=True, auto_delete=False,
                                  arguments={"x-message-ttl": int(ttl_s) * 1000, "x-max-length": int(max_messages)})
        except amqp.exceptions.PreconditionFailed:
            channel = conn.channel()  # the refusal closed that channel
            channel.queue_declare(queue, passive=True)
        channel.queue_bind(queue, queue, "")
    finally:
        channel.close()
    return queue


def declare_consumer_queues(channel: amqp.Channel, queue: str, bindings: Iterable[tuple[str, str]] = ()) -> None:
    """The consumer's durable queue, its delay (retry) queue and its dead-letter queue."""
    channel.queue_declare(queue, durable=True, auto_delete=False)
    for exchange, routing_key in bindings:
        channel.queue_bind(queue, exchange, routing_key)
    declare_failure_queues(channel, queue)


def declare_failure_queues(channel: amqp.Channel, queue: str) -> None:
    # Expired messages in the retry queue dead-letter back to this consumer's queue only
    # (default exchange, routing key = queue name), never to every subscriber.
    channel.queue_declare(
        retry_queue(queue),
        durable=True,
        auto_delete=False,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue},
    )
    channel.queue_declare(dead_letter_queue(queue), durable=True, auto_delete=False)


class PublishError(RuntimeError):
    pass


class CorkedWriter:
    """Stands in for the socket under py-amqp's frame writer. While `corked`, frames collect
    in memory and go out in large writes: one send() per publish cost the relay about a
    fifth of its CPU. Any write made uncorked (a synchronous method, an ack) first flushes
    what is buffered, so frames always leave in order."""

    def __init__(self, transport: Any, limit: int = 128 * 1024):
        self._write = transport.write
        self._buffer = bytearray()
        self.limit = limit
        self.corked = False

    def write(self, data: bytes | memoryview) -> None:
        if self.corked:
            self._buffer += data  # copies: py-amqp reuses the memory it hands us
            if len(self._buffer) >= self.limit:
                self.flush()
        else:
            self.flush()
            self._write(data)

    def flush(self) -> None:
        if self._buffer:
            data, self._buffer = self._buffer, bytearray()
            self._write(data)


class ConfirmingPublisher:
    """Publishes many messages, then waits once for the broker's confirms (pipelined).

    Publishes are buffered (see CorkedWriter) until `flush`, `collect_confirms` or
    `wait_for_confirms`. A caller that keeps publishing while earlier confirms are out (the
    relay) uses `last_tag`, `collect_confirms` and `confirmed_through` instead of waiting.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._writer: CorkedWriter | None = None
        self.conn = connect(settings, frame_writer=self._frame_writer)
        self.channel = self.conn.channel()
        self.channel.confirm_select()
        self._next_tag = 1
        self._unconfirmed: set[int] = set()
        self._lowest = 1  # every tag below this one is settled
        self._nacked: set[int] = set()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)

    def _frame_writer(self, connection: amqp.Connection, transport: Any) -> Any:
        self._writer = CorkedWriter(transport)
        return amqp_frame_writer(connection, self._writer)

    def _settle(self, tag: int, multiple: bool) -> set[int]:
        if multiple:
            # Tags are issued in order, so a multiple confirm settles a prefix; walking only
            # the tags since the last one keeps this O(1) per message.
            done = {t for t in range(self._lowest, tag + 1) if t in self._unconfirmed}
            self._lowest = max(self._lowest, tag + 1)
        else:
            done = {tag} & self._unconfirmed
        self._unconfirmed -= done
        return done

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settle(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked |= self._settle(delivery_tag, multiple)

    def publish(self, exchange: str, routing_key: str, body: bytes | str, *, headers: dict[str, Any] | None = None,
                message_id: str | None = None, expiration: str | None = None) -> None:
        if isinstance(body, str):
            body = body.encode()
        props: dict[str, Any] = {
            "content_type": "application/json",
            "content_encoding": "utf-8",
            "delivery_mode": PERSISTENT,
        }
        if headers:
            props["application_headers"] = headers
        if message_id:
            props["message_id"] = message_id
        if expiration:
            props["expiration"] = expiration
        assert self._writer is not None
        self._writer.corked = True
        try:
            self.channel.basic_publish(amqp.Message(body, **props), exchange=exchange, routing_key=routing_key)
        finally:
            self._writer.corked = False
        self._unconfirmed.add(self._next_tag)
        self._next_tag += 1

    def flush(self) -> None:
        """Send buffered publishes now (without waiting for their confirms)."""
        assert self._writer is not None
        self._writer.flush()

    @property
    def last_tag(self) -> int:
        """Delivery tag of the latest publish (0 before the first)."""
        return self._next_tag - 1

    def fileno(self) -> int:
        """The broker socket, for select(): readable when confirms (or other frames) arrive."""
        return int(self.conn.sock.fileno())

    def confirmed_through(self) -> int:
        """The highest tag such that it and every tag before it are confirmed."""
        return min(self._unconfirmed) - 1 if self._unconfirmed else self._next_tag - 1

    def collect_confirms(self) -> None:
        """Send what is buffered and take in the confirms that have already arrived, without
        waiting. Raises PublishError if the broker refused (nacked) any publish."""
        self.flush()
        while True:
            try:
                self.conn.drain_events(timeout=0)
            except TimeoutError:
                break
        self._raise_if_nacked()

    def _raise_if_nacked(self) -> None:
        if self._nacked:
            n = len(self._nacked)
            self._nacked.clear()
            raise PublishError(f"broker refused (nack) {n} messages")

    def wait_for_confirms(self, timeout: float = 30.0) -> None:
        self.flush()
        deadline = time.monotonic() + timeout
        while self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(f"{len(self._unconfirmed)} publishes not confirmed within {timeout}s")
            try:
                self.conn.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        self._raise_if_nacked()

    def close(self) -> None:
        try:
            if self._writer is not None:
                self._writer.flush()
            self.conn.close()
        except Exception:
            pass


@dataclass(frozen=True)
class FailurePolicy:
    max_attempts: int = 8
    base_delay_ms: int = 500
    max_delay_ms: int = 60_000

    def delay_ms(self, attempt: int) -> int:
        return min(self.base_delay_ms * (2 ** max(attempt - 1, 0)), self.max_delay_ms)


def describe_exception(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return text[:2000]


def route_failure(publisher: ConfirmingPublisher, queue: str, body: bytes | str, headers: dict[str, Any] | None,
                  error: str, policy: FailurePolicy, *, permanent: bool = False) -> str:
    """Send a failed message to its delay queue (retry with backoff) or, after the last
    attempt or for a permanent fault, to the dead-letter queue with its error. Waits for
    the broker's confirm: only then may the caller ack the original. Returns where it went.
    """
    headers = dict(headers or {})
    attempts = int(headers.get("x-attempts", 0)) + 1
    headers["x-attempts"] = attempts
    headers["x-last-error"] = error
    headers["x-original-queue"] = queue
    if permanent or attempts >= policy.max_attempts:
        headers["x-dead-lettered-at"] = time.time()
        publisher.publish("", dead_letter_queue(queue), body, headers=headers)
        where = "dead-letter"
    else:
        publisher.publish("", retry_queue(queue), body, headers=headers, expiration=str(policy.delay_ms(attempts)))
        where = "retry"
    publisher.wait_for_confirms()
    return where


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()
