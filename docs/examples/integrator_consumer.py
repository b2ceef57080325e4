"""An outside system's consumer of the platform's events, written against docs/asyncapi.yaml only.

It imports nothing of the platform: it reads the AsyncAPI document for the message shapes,
connects with the URL `platformctl consumers create` printed, checks each message against the
document, and applies it once by `event_id` (the document says delivery is at least once),
recording it in a SQLite file in the same transaction as the "effect", then acks.

    python docs/examples/integrator_consumer.py --url "$URL" --queue integration.crm \
        --db crm.sqlite [--accept organization_created:1,project_status_changed:1]

Needs py-amqp, PyYAML and jsonschema. Stops on Ctrl-C, or after --idle seconds without a message.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import amqp
import jsonschema
import yaml

HERE = Path(__file__).resolve().parent


def load_document(asyncapi_path: Path) -> tuple[dict[tuple[str, int], Any], dict[tuple[str, int], Any]]:
    """From the document: a validator per message (event_type, schema_version), resolving its
    $refs against the document itself, and each newer version's `x-adapts-to` (how to read it
    as the older version: drop the fields it added)."""
    doc = yaml.safe_load(asyncapi_path.read_text())
    checks, adapters = {}, {}
    for message_id, message in doc["components"]["messages"].items():
        event_type, version = message["name"], int(message_id.rsplit(".v", 1)[1])
        schema = {**doc, "$ref": f"#/components/messages/{message_id}/payload"}
        checks[(event_type, version)] = jsonschema.Draft202012Validator(schema)
        if "x-adapts-to" in message:
            adapters[(event_type, version)] = message["x-adapts-to"]
    return checks, adapters


def downgrade(message: dict[str, Any], adapters: dict[tuple[str, int], Any],
              accept: set[tuple[str, int]]) -> dict[str, Any] | None:
    """The message in a version this consumer accepts, following the document's adapters."""
    while (message["event_type"], message["schema_version"]) not in accept:
        rule = adapters.get((message["event_type"], message["schema_version"]))
        if rule is None:
            return None
        payload = {k: v for k, v in message["payload"].items() if k not in rule["drop_payload_fields"]}
        message = {**message, "schema_version": rule["schema_version"], "payload": payload}
    return message


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE IF NOT EXISTS received (event_id TEXT PRIMARY KEY, event_type TEXT NOT NULL, "
               "schema_version INTEGER NOT NULL, producer TEXT NOT NULL, position INTEGER NOT NULL, "
               "payload TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS rejected (at REAL, reason TEXT, body TEXT)")
    db.commit()
    return db


def apply(db: sqlite3.Connection, checks: dict[tuple[str, int], Any], adapters: dict[tuple[str, int], Any],
          accept: set[tuple[str, int]] | None, body: bytes) -> str:
    """Check and apply one message; returns what happened (applied, duplicate, rejected: why)."""
    try:
        message = json.loads(body)
        key = (message["event_type"], int(message["schema_version"]))
    except (ValueError, KeyError, TypeError):
        return _reject(db, "not an envelope", body)
    if key not in checks:
        return _reject(db, f"{key[0]} v{key[1]} is not in the AsyncAPI document", body)
    if accept is not None and key not in accept:
        adapted = downgrade(message, adapters, accept)
        if adapted is None:
            return _reject(db, f"{key[0]} v{key[1]} is not a version this consumer accepts", body)
        message, key = adapted, (adapted["event_type"], adapted["schema_version"])
    errors = sorted(checks[key].iter_errors(message), key=lambda e: list(e.path))
    if errors:
        return _reject(db, f"{key[0]} v{key[1]}: {errors[0].message}", body)
    with db:  # the effect and the event_id in one transaction
        cur = db.execute("INSERT OR IGNORE INTO received VALUES (?, ?, ?, ?, ?, ?)",
                         (message["event_id"], key[0], key[1], message["producer"], message["producer_position"],
                          json.dumps(message["payload"], sort_keys=True)))
    return "applied" if cur.rowcount == 1 else "duplicate"


def _reject(db: sqlite3.Connection, reason: str, body: bytes) -> str:
    with db:
        db.execute("INSERT INTO rejected VALUES (?, ?, ?)", (time.time(), reason, body.decode("utf-8", "replace")))
    return "rejected: " + reason


def connect(url: str) -> amqp.Connection:
    from urllib.parse import unquote, urlparse

    u = urlparse(url)
    conn = amqp.Connection(host=f"{u.hostname}:{u.port or 5672}", userid=unquote(u.username or "guest"),
                           password=unquote(u.password or "guest"), virtual_host=unquote(u.path[1:]) or "/")
    conn.connect()
    return conn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="amqp://user:password@host:port/vhost")
    ap.add_argument("--queue", required=True)
    ap.add_argument("--db", required=True, type=Path, help="SQLite file: received and rejected messages")
    ap.add_argument("--asyncapi", type=Path, default=HERE.parent / "asyncapi.yaml")
    ap.add_argument("--accept", help="event_type:version,... the versions this consumer understands; newer ones "
                    "are read through the document's x-adapts-to (default: every message in the document)")
    ap.add_argument("--idle", type=float, help="stop after this many seconds without a message")
    args = ap.parse_args(argv)

    checks, adapters = load_document(args.asyncapi)
    accept = None
    if args.accept:
        accept = {(t, int(v)) for t, v in (item.split(":") for item in args.accept.split(","))}
    db = open_db(args.db)
    conn = connect(args.url)
    channel = conn.channel()
    channel.basic_qos(0, 100, False)
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)

    def on_message(msg: amqp.Message) -> None:
        outcome = apply(db, checks, adapters, accept, msg.body if isinstance(msg.body, bytes) else msg.body.encode())
        print(outcome, flush=True)
        channel.basic_ack(msg.delivery_tag)  # after the commit (a rejected message is recorded, not retried)

    channel.basic_consume(args.queue, callback=on_message)
    last = time.monotonic()
    try:
        while not stopping:
            try:
                conn.drain_events(timeout=0.5)
                last = time.monotonic()
            except socket.timeout:
                if args.idle is not None and time.monotonic() - last >= args.idle:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
