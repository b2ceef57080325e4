"""Benchmark: the raw RabbitMQ ceiling on this machine (the `bench/events.py` yardstick).

Publishes persistent messages to a durable queue (through a topic exchange, as the relay
does) with publisher confirms kept in flight (a sliding window, never one round trip per
message) and socket writes coalesced as the relay's publisher does, then consumes them
back with prefetch and batched acks. Uses py-amqp, the client
the relay and consumers use, in a throwaway vhost it deletes afterwards.

Run: .venv/bin/python bench/broker.py [--messages 30000] [--size 400] [--window 1000]
Last line: RESULT broker_publish_confirmed_per_s=... broker_consume_per_s=...
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import amqp
from amqp.method_framing import frame_writer as amqp_frame_writer

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cpu import CpuMeter  # noqa: E402
from services.shared import broker  # noqa: E402
from services.shared.rabbitadmin import RabbitAdmin  # noqa: E402
from services.shared.settings import Settings, load_settings  # noqa: E402

EXCHANGE = "bench.events"
ROUTING_KEY = "bench_recorded"


@dataclass(frozen=True)
class Ceiling:
    messages: int
    publish_confirmed_per_s: float
    consume_per_s: float
    rabbitmq_us_per_msg: float  # server CPU for one message's publish + delivery + ack
    client_us_per_msg: float  # this (py-amqp) process's CPU for the same


def publish_confirmed(settings: Settings, queue: str, n: int, body: bytes, window: int, coalesce: int) -> float:
    """Persistent publishes with up to `window` confirms outstanding, written to the socket
    `coalesce` at a time (as the relay does; 1 = one send per message). Returns messages/s."""
    box: dict[str, broker.CorkedWriter] = {}

    def frame_writer(connection: amqp.Connection, transport: object) -> object:
        box["writer"] = broker.CorkedWriter(transport)
        return amqp_frame_writer(connection, box["writer"])

    conn = broker.connect(settings, frame_writer=frame_writer)
    try:
        writer = box["writer"]
        ch = conn.channel()
        ch.exchange_declare(EXCHANGE, "topic", durable=True, auto_delete=False)
        ch.queue_declare(queue, durable=True, auto_delete=False)
        ch.queue_bind(queue, EXCHANGE, ROUTING_KEY)
        ch.confirm_select()
        # Confirms arrive in tag order on one channel, so the highest settled tag is enough.
        state = {"confirmed": 0, "nacked": 0}

        def on_ack(tag: int, multiple: bool) -> None:
            state["confirmed"] = max(state["confirmed"], tag)

        def on_nack(tag: int, multiple: bool) -> None:
            state["nacked"] += 1
            on_ack(tag, multiple)

        ch.events["basic_ack"].add(on_ack)
        ch.events["basic_nack"].add(on_nack)
        props = {"content_type": "application/json", "delivery_mode": broker.PERSISTENT}
        t0 = time.perf_counter()
        for sent in range(1, n + 1):
            writer.corked = True
            ch.basic_publish(amqp.Message(body, **props), exchange=EXCHANGE, routing_key=ROUTING_KEY)
            writer.corked = False
            if sent % coalesce == 0:
                writer.flush()
            while sent - state["confirmed"] >= window:
                writer.flush()
                conn.drain_events(timeout=10)
        writer.flush()
        while state["confirmed"] < n:
            conn.drain_events(timeout=10)
        elapsed = time.perf_counter() - t0
        if state["nacked"]:
            raise RuntimeError(f"broker nacked {state['nacked']} publishes")
        return n / elapsed
    finally:
        conn.close()


def consume_acked(settings: Settings, queue: str, n: int, prefetch: int, ack_every: int) -> float:
    """Consume `n` messages already in `queue`, acking every `ack_every` (multiple). Returns messages/s."""
    conn = broker.connect(settings)
    try:
        ch = conn.channel()
        ch.basic_qos(0, prefetch, False)
        state = {"got": 0, "last_tag": 0}

        def on_message(msg: amqp.Message) -> None:
            state["got"] += 1
            state["last_tag"] = msg.delivery_tag
            if state["got"] % ack_every == 0 or state["got"] == n:
                ch.basic_ack(msg.delivery_tag, multiple=True)

        ch.basic_consume(queue, callback=on_message)
        t0 = time.perf_counter()
        while state["got"] < n:
            try:
                conn.drain_events(timeout=10)
            except socket.timeout:
                raise RuntimeError(f"consumer stalled at {state['got']}/{n}") from None
        elapsed = time.perf_counter() - t0
        return n / elapsed
    finally:
        conn.close()


def measure_ceiling(settings: Settings, *, messages: int = 30_000, size: int = 400, window: int = 1000,
                    coalesce: int = 100, prefetch: int = 1000, ack_every: int = 250,
                    own_vhost: bool = True) -> Ceiling:
    """Publish then consume `messages` persistent messages; in a throwaway vhost unless told not to."""
    admin = RabbitAdmin(settings)
    if own_vhost:
        settings = settings.with_overrides(amqp_vhost=f"bench_broker_{secrets.token_hex(4)}")
        admin = RabbitAdmin(settings)
        admin.create_vhost(settings.amqp_vhost)
    queue = f"bench.ceiling.{secrets.token_hex(4)}"
    body = (b'{"payload":"' + b"x" * max(size - 14, 0) + b'"}')[:max(size, 14)]
    meter = CpuMeter({"client": os.getpid()})
    try:
        meter.start()
        pub = publish_confirmed(settings, queue, messages, body, window, coalesce)
        con = consume_acked(settings, queue, messages, prefetch, ack_every)
        cpu = meter.stop()
    finally:
        if own_vhost:
            admin.delete_vhost(settings.amqp_vhost)
        else:
            conn = broker.connect(settings)
            try:
                ch = conn.channel()
                ch.queue_delete(queue)
                ch.exchange_delete(EXCHANGE)
            finally:
                conn.close()
    return Ceiling(messages, pub, con, cpu["rabbitmq (all)"] / messages * 1e6, cpu["client"] / messages * 1e6)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--size", type=int, default=400, help="body bytes (a probe envelope is ~390)")
    parser.add_argument("--window", type=int, default=1000, help="publishes in flight awaiting confirms")
    parser.add_argument("--coalesce", type=int, default=100, help="publishes per socket write (1: one each)")
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--ack-every", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best one is reported")
    args = parser.parse_args(argv)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cpus", flush=True)
    settings = load_settings()
    runs = []
    for i in range(args.repeat):
        c = measure_ceiling(settings, messages=args.messages, size=args.size, window=args.window,
                            coalesce=args.coalesce, prefetch=args.prefetch, ack_every=args.ack_every)
        print(f"run {i + 1}: {c.messages} msgs of {args.size} B: publish+confirm {c.publish_confirmed_per_s:,.0f}/s,"
              f" consume+ack {c.consume_per_s:,.0f}/s; CPU per message: RabbitMQ {c.rabbitmq_us_per_msg:.0f} us,"
              f" client {c.client_us_per_msg:.0f} us", flush=True)
        runs.append(c)
    best_pub = max(r.publish_confirmed_per_s for r in runs)
    best_con = max(r.consume_per_s for r in runs)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(f"RESULT broker_publish_confirmed_per_s={best_pub:.0f} broker_consume_per_s={best_con:.0f}")


if __name__ == "__main__":
    main()
