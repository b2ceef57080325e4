"""The lean RPC publisher (services/shared/nameko_ext.py) on the real broker: messages go out
transient with their properties, and a broken connection is opened again for the next one."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import kombu

from services.shared.nameko_ext import LeanPublisher


def receive(conn: kombu.Connection, queue: str) -> Any:
    for _ in range(200):
        message = conn.default_channel.basic_get(queue, no_ack=True)
        if message is not None:
            return message
        time.sleep(0.05)  # poll interval of a bounded look at the queue
    raise AssertionError(f"nothing arrived on {queue}")


def test_publishes_transient_messages_and_reconnects(settings: Any) -> None:
    queue = f"lean-{uuid.uuid4().hex[:8]}"
    with kombu.Connection(settings.amqp_uri) as conn:
        conn.default_channel.queue_declare(queue, auto_delete=True)
        publisher = LeanPublisher(settings.amqp_uri)
        try:
            publisher.publish(b'{"result": 1, "error": null}', "application/json", "utf-8", "", queue,
                              correlation_id="c-1", reply_to="r")
            first = receive(conn, queue)
            assert first.body == '{"result": 1, "error": null}'  # decoded as its content_encoding says
            assert first.properties["delivery_mode"] == 1  # transient: an RPC outlives no caller
            assert first.properties["correlation_id"] == "c-1" and first.properties["content_type"] == "application/json"

            # The connection breaks under it (a broker restart, a cut): the next publish opens a new one.
            publisher._conn.connection.transport.sock.shutdown(socket.SHUT_RDWR)
            publisher.publish(b'"again"', "application/json", "utf-8", "", queue, correlation_id="c-2")
            second = receive(conn, queue)
            assert second.body == '"again"' and second.properties["correlation_id"] == "c-2"
        finally:
            publisher.close()
