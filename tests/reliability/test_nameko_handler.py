"""The nameko side of the consumer guarantees, on billing's `on_organization_created`
(a ReliableEventHandler) running as its real process: a redelivered event is applied once,
a malformed one is dead-lettered at once with its error, and the queue keeps flowing."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Iterator

import amqp
import pytest

from services.shared import broker
from services.shared.contracts import OutgoingMessage, build_message
from services.shared.db import connect
from services.shared.runner import Platform
from services.shared.settings import Settings
from tests.conftest import ARTIFACTS

from .conftest import fresh_settings, take_all, wait_for

QUEUE = "evt-orgs-organization_created--billing.on_organization_created"
DLQ = broker.dead_letter_queue(QUEUE)


@pytest.fixture(scope="module")
def billing() -> Iterator[tuple[Settings, Platform]]:
    """Only the billing process, on its own database and vhost (so its DLQ holds only ours)."""
    with fresh_settings("nameko", consumer_max_attempts=3, consumer_retry_base_ms=50) as s:
        platform = Platform(s, log_dir=ARTIFACTS / "logs" / s.db_name, only=["billing"])
        try:
            platform.start(timeout=60)
            wait_for("billing to consume its event queue", lambda: consumers(s, QUEUE) > 0)
            yield s, platform
        finally:
            platform.stop()


def consumers(settings: Settings, queue: str) -> int:
    conn = broker.connect(settings)
    try:
        return int(conn.channel().queue_declare(queue, passive=True)[2])
    except Exception:  # noqa: BLE001 -- not declared yet
        return 0
    finally:
        conn.close()


def ready(settings: Settings, queue: str) -> int:
    conn = broker.connect(settings)
    try:
        return int(conn.channel().queue_declare(queue, passive=True)[1])
    finally:
        conn.close()


def organization_created(slug: str, event_id: uuid.UUID | None = None) -> dict[str, Any]:
    out = OutgoingMessage("organization_created", 1,
                          {"slug": slug, "name": slug.title(), "owner_user_id": str(uuid.uuid4())}, org_id=slug)
    return build_message(out, event_id=event_id or uuid.uuid4(), producer="orgs", producer_position=1,
                         occurred_at=datetime.now(timezone.utc))


def publish(settings: Settings, *bodies: bytes) -> None:
    """Publish to `orgs.events` exactly as the relay does (persistent, confirmed)."""
    p = broker.ConfirmingPublisher(settings)
    try:
        broker.declare_exchange(p.channel, "orgs")
        for body in bodies:
            p.publish(broker.exchange_name("orgs"), "organization_created", body)
        p.wait_for_confirms()
    finally:
        p.close()


def publish_as(settings: Settings, body: bytes, content_type: str | None) -> None:
    """Publish with a chosen content type (or none), as a broken producer might."""
    conn = broker.connect(settings)
    try:
        ch = conn.channel()
        ch.confirm_select()
        props: dict[str, Any] = {"delivery_mode": broker.PERSISTENT}
        if content_type:
            props["content_type"] = content_type
        ch.basic_publish(amqp.Message(body, **props), exchange=broker.exchange_name("orgs"),
                         routing_key="organization_created")
    finally:
        conn.close()


def subscriptions(settings: Settings, slug: str) -> list[tuple[Any, ...]]:
    with connect(settings) as db:
        return db.execute("SELECT org_slug, plan, source_event_id FROM billing.subscriptions WHERE org_slug = %s",
                          (slug,)).fetchall()


def claims(settings: Settings, event_id: str) -> int:
    with connect(settings) as db:
        row = db.execute("SELECT count(*) FROM billing.processed_messages WHERE event_id = %s", (event_id,)).fetchone()
    return int(row[0]) if row else 0


def drained(settings: Settings) -> bool:
    return ready(settings, QUEUE) == 0 and ready(settings, broker.retry_queue(QUEUE)) == 0


@pytest.mark.timeout(90)
def test_redelivered_event_is_applied_once(billing: tuple[Settings, Platform]) -> None:
    settings, platform = billing
    slug = f"acme-{uuid.uuid4().hex[:8]}"
    first = organization_created(slug)
    # A copy with the same event_id but another body: only event_id may decide "seen it".
    impostor = organization_created(f"other-{uuid.uuid4().hex[:8]}", uuid.UUID(first["event_id"]))
    body = json.dumps(first).encode()
    publish(settings, body, body)
    wait_for("billing to record the subscription", lambda: subscriptions(settings, slug))
    wait_for("every copy consumed", lambda: drained(settings))
    # Copies delivered at the same time race (nameko runs them concurrently), so the impostor
    # comes after: by then its event_id is claimed and it must change nothing.
    publish(settings, json.dumps(impostor).encode())
    wait_for("the impostor consumed", lambda: drained(settings))
    # A marker published after the copies proves they were all handled, not just queued.
    marker = organization_created(f"marker-{uuid.uuid4().hex[:8]}")
    publish(settings, json.dumps(marker).encode())
    wait_for("the marker", lambda: subscriptions(settings, marker["payload"]["slug"]))

    rows = subscriptions(settings, slug)
    assert [(r[0], r[1], str(r[2])) for r in rows] == [(slug, "free", first["event_id"])]
    assert subscriptions(settings, impostor["payload"]["slug"]) == []
    assert claims(settings, first["event_id"]) == 1
    assert ready(settings, DLQ) == 0, "a duplicate must be dropped, not dead-lettered"
    assert platform.procs["billing"].poll() is None


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    "body, content_type, reason",
    [
        (b"{this is not json", "application/json", "not JSON"),
        (b"hello", "text/plain", "text/plain"),
        (b"[1, 2]", "application/json", "not a JSON object"),
        (b'{"event_type": "organization_created"}', "application/json", "envelope invalid"),
        ("payload", "application/json", "payload invalid"),
    ],
    ids=["not-json", "not-json-content-type", "json-list", "no-envelope", "bad-payload"],
)
def test_malformed_event_is_dead_lettered_at_once_and_queue_keeps_flowing(
    billing: tuple[Settings, Platform], body: Any, content_type: str, reason: str
) -> None:
    settings, platform = billing
    if body == "payload":
        bad = organization_created("ok-slug")
        bad["payload"]["slug"] = "not a slug!"
        body = json.dumps(bad).encode()
    publish_as(settings, body, content_type)
    good = organization_created(f"after-{uuid.uuid4().hex[:8]}")
    publish(settings, json.dumps(good).encode())

    wait_for("the malformed message in the DLQ", lambda: ready(settings, DLQ) >= 1, timeout=30)
    parked = take_all(settings, DLQ)
    assert len(parked) == 1
    headers, parked_body = parked[0]
    assert parked_body == body
    assert headers["x-attempts"] == 1, "a malformed message must not be retried"
    assert reason in headers["x-last-error"], headers["x-last-error"]
    assert headers["x-original-queue"] == QUEUE

    # The good message behind it is applied, and the service is still up.
    wait_for("the good message after it", lambda: subscriptions(settings, good["payload"]["slug"]))
    assert platform.procs["billing"].poll() is None, "billing died on a malformed message"


@pytest.mark.timeout(300)
def test_handler_pauses_through_a_database_outage_and_dead_letters_nothing() -> None:
    """billing's handler reaches PostgreSQL through a TCP proxy the test cuts: events that
    arrive meanwhile wait (uncounted, whatever consumer_max_attempts says) and are applied
    once it is back; nothing lands in the DLQ."""
    from tests.support import TcpProxy

    with fresh_settings("nout", consumer_max_attempts=2, consumer_retry_base_ms=50) as s:
        proxy = TcpProxy(s.db_host, s.db_port)
        through = s.with_overrides(db_host="127.0.0.1", db_port=proxy.port)
        platform = Platform(through, log_dir=ARTIFACTS / "logs" / s.db_name, only=["billing"])
        try:
            platform.start(timeout=60)
            wait_for("billing to consume its event queue", lambda: consumers(s, QUEUE) > 0)
            first = f"out-{uuid.uuid4().hex[:8]}"
            publish(s, json.dumps(organization_created(first)).encode())
            wait_for("billing to record the first subscription", lambda: subscriptions(s, first))

            proxy.cut()
            slugs = [f"out-{uuid.uuid4().hex[:8]}" for _ in range(5)]
            publish(s, *[json.dumps(organization_created(slug)).encode() for slug in slugs])
            log = ARTIFACTS / "logs" / s.db_name / "billing.log"
            wait_for("billing to pause (or dead-letter)",
                     lambda: "paused" in log.read_text(errors="replace") or ready(s, DLQ) > 0, timeout=120)
            assert ready(s, DLQ) == 0, "an event was dead-lettered because the database was down"

            proxy.restore()
            for slug in slugs:
                wait_for(f"billing to record {slug} after the outage", lambda: subscriptions(s, slug), timeout=60)
            assert "resumes" in log.read_text(errors="replace")
            assert ready(s, DLQ) == 0
            for slug in [first, *slugs]:
                assert len(subscriptions(s, slug)) == 1
        finally:
            proxy.restore()
            platform.stop()
            proxy.close()
