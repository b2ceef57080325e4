"""Consumers for integrators: an outside system's own durable queue, bound to the event types
it asked for, with its own RabbitMQ user that may only read that queue, back-filled from the
event stores through the replay path. The broker is the registry: no table of consumers.

Used by platformctl (`consumers create/list/lag/delete`); imports no service package.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import quote

import requests

from . import broker
from .contracts import REGISTRY
from .rabbitadmin import RabbitAdmin
from .settings import Settings

PREFIX = "integration."
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


class IntegratorError(Exception):
    """Bad input or a state the operator can act on (the message says which)."""


def queue_name(name: str) -> str:
    return PREFIX + name


def user_name(settings: Settings, name: str) -> str:
    # Broker users are cluster-wide, queues per vhost: the vhost keeps two platforms apart.
    return f"{PREFIX}{name}@{settings.amqp_vhost}"


def producers_of(events: list[str]) -> dict[str, list[str]]:
    """Which producer publishes each event type (its exchange is `<producer>.events`)."""
    known = {event_type: c.producer for (event_type, _), c in REGISTRY.items()}
    unknown = [e for e in events if e not in known]
    if unknown:
        raise IntegratorError(f"unknown event type(s) {', '.join(unknown)}; public ones: "
                              f"{', '.join(sorted(known))}")
    out: dict[str, list[str]] = {}
    for e in events:
        out.setdefault(known[e], []).append(e)
    return out


def _admin_request(admin: RabbitAdmin, method: str, *parts: str, **kw: Any) -> requests.Response:
    r = requests.request(method, admin._url(*parts), auth=admin.auth, timeout=admin.timeout, **kw)
    if r.status_code not in (200, 201, 204, 404):
        r.raise_for_status()
    return r


def create(settings: Settings, name: str, events: list[str], start: int | None) -> dict[str, Any]:
    """Queue, user, then history: with `start`, every stored event of those types from that
    position of each producer's log is replayed to the queue first; the queue is bound to the
    live exchanges after that first pass, and a second pass replays what was stored meanwhile.
    The overlap can deliver an event twice, always with its one event_id."""
    from .platformctl import replay

    if not NAME.fullmatch(name):
        raise IntegratorError(f"a consumer name is 1-63 of a-z, 0-9 and '-', starting with a letter or digit, "
                              f"not {name!r}")
    events = sorted(set(e.strip() for e in events if e.strip()))
    if not events:
        raise IntegratorError("give at least one event type (--events a,b)")
    by_producer = producers_of(events)
    admin = RabbitAdmin(settings)
    queue = queue_name(name)
    if admin.queue(queue) is not None:
        raise IntegratorError(f"consumer {name!r} exists already (queue {queue}); delete it first")

    password = secrets.token_urlsafe(24)
    user = user_name(settings, name)
    _admin_request(admin, "PUT", "users", user, json={"password": password, "tags": ""})
    # Read (consume, ack) on its own queue only; it can declare, bind and publish nothing.
    _admin_request(admin, "PUT", "permissions", settings.amqp_vhost, user,
                   json={"configure": "^$", "write": "^$", "read": f"^{re.escape(queue)}$"})

    conn = broker.connect(settings)
    try:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True, auto_delete=False)
        replayed = {p: 0 for p in by_producer}
        tops: dict[str, int] = {}
        if start is not None:
            for producer, types in by_producer.items():
                tops[producer] = _newest(settings, producer)
                replayed[producer] += replay(settings, producer, start, tops[producer], {queue: types})[queue]
        for producer, types in by_producer.items():
            exchange = broker.declare_exchange(channel, producer)
            for event_type in types:
                channel.queue_bind(queue, exchange, event_type)
        if start is not None:
            for producer, types in by_producer.items():
                gap_from = max(tops[producer] + 1, start)
                replayed[producer] += replay(settings, producer, gap_from, None, {queue: types})[queue]
    finally:
        conn.close()
    return {"name": name, "queue": queue, "user": user, "password": password, "vhost": settings.amqp_vhost,
            "events": events, "replayed": replayed}


def _newest(settings: Settings, producer: str) -> int:
    from .platformctl import open_store

    with open_store(producer, settings) as (_, app):
        return int(app.recorder.max_notification_id() or 0)


def consumers(settings: Settings) -> list[dict[str, Any]]:
    admin = RabbitAdmin(settings)
    out = []
    for q in admin.queues():
        if not q["name"].startswith(PREFIX):
            continue
        r = _admin_request(admin, "GET", "queues", settings.amqp_vhost, q["name"], "bindings")
        bindings = [b for b in r.json() if b.get("source")] if r.status_code == 200 else []
        out.append({
            "name": q["name"][len(PREFIX):], "queue": q["name"],
            "events": sorted(b["routing_key"] for b in bindings),
            "exchanges": sorted({b["source"] for b in bindings}),
            "ready": int(q.get("messages_ready") or 0), "unacked": int(q.get("messages_unacknowledged") or 0),
            "connected": int(q.get("consumers") or 0),
        })
    return sorted(out, key=lambda c: c["name"])


def get(settings: Settings, name: str) -> dict[str, Any]:
    for c in consumers(settings):
        if c["name"] == name:
            return c
    raise IntegratorError(f"no consumer {name!r} (see `platformctl consumers list`)")


def delete(settings: Settings, name: str) -> dict[str, Any]:
    found = get(settings, name)
    admin = RabbitAdmin(settings)
    _admin_request(admin, "DELETE", "queues", settings.amqp_vhost, found["queue"])
    _admin_request(admin, "DELETE", "users", user_name(settings, name))
    return found


def amqp_url(settings: Settings, created: dict[str, Any]) -> str:
    """What to hand the integrator (once): where to connect and as whom."""
    return (f"amqp://{quote(created['user'], safe='')}:{quote(created['password'], safe='')}"
            f"@{settings.amqp_host}:{settings.amqp_port}/{quote(settings.amqp_vhost, safe='')}")
