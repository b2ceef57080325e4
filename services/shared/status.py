"""The platform's health as data: each process up or down, queue depths, dead letters, relay
lag. One computation for both faces that show it: `platformctl status` prints it, and the
admin panel's system health page (gateway, /platform/admin/health) returns it as JSON.

Reads the broker (exact queue depths by passive declare, the management API for the rest),
asks each service's `health` RPC, and reads each producer's relay position and newest stored
position. Loads nameko only to ping the services.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from typing import Any, Iterator

import amqp
import psycopg
import requests

from . import broker, procs
from .db import connect as db_connect
from .outbox import RelaySpec
from .rabbitadmin import RabbitAdmin
from .relay import PRODUCERS, load_spec, position_key, relay_connection_name
from .settings import SERVICES, Settings

HEALTH_TIMEOUT = 2.0


def exact_depths(settings: Settings, names: list[str]) -> dict[str, tuple[int, int]]:
    """(ready messages, consumers) per queue, straight from the broker: the management
    API's figures lag by its statistics interval (5 s by default)."""
    out: dict[str, tuple[int, int]] = {}
    conn = broker.connect(settings)
    try:
        channel = conn.channel()
        for name in names:
            try:
                ok = channel.queue_declare(name, passive=True)
                out[name] = (int(ok.message_count), int(ok.consumer_count))
            except amqp.exceptions.ChannelError:
                channel = conn.channel()  # gone meanwhile, or exclusive: that closed the channel
    finally:
        conn.close()
    return out


def relay_position(settings: Settings, spec: RelaySpec, conn: psycopg.Connection | None = None) -> int:
    with _connection(settings, conn) as c:
        try:
            row = c.execute(
                f'SELECT position FROM "{spec.application.name}".relay_position WHERE relay = %s',
                (position_key(spec.producer),),
            ).fetchone()
        except psycopg.errors.UndefinedTable:
            return 0  # that service never started here: nothing relayed
    return int(row[0]) if row else 0


def newest_position(spec: RelaySpec, conn: psycopg.Connection) -> int:
    """The newest notification id in a producer's store (eventsourcing's `<name>_events`
    table in the schema of the same name), read with plain SQL: no application to open."""
    name = spec.application.name
    try:
        row = conn.execute(f'SELECT max(notification_id) FROM "{name}"."{name.lower()}_events"').fetchone()
    except psycopg.errors.UndefinedTable:
        return 0  # nothing stored yet: the table comes with the first application start
    return int(row[0] or 0)


def relay_lag(settings: Settings, conn: psycopg.Connection | None = None) -> dict[str, tuple[int, int]]:
    """Per producer: (relay's saved position, newest position in its store), over one connection."""
    lag = {}
    with _connection(settings, conn) as c:
        for producer in PRODUCERS:
            spec = load_spec(producer)
            lag[producer] = (relay_position(settings, spec, c), newest_position(spec, c))
    return lag


@contextlib.contextmanager
def _connection(settings: Settings, conn: psycopg.Connection | None) -> Iterator[psycopg.Connection]:
    if conn is not None:
        yield conn
        return
    with db_connect(settings, autocommit=True) as fresh:
        yield fresh


def ping_services(settings: Settings, services: list[str]) -> dict[str, str]:
    """Each service's answer to its `health` RPC ("ok", or why not), all asked at once so a
    hung service costs one timeout, not one each."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # importing nameko imports eventlet, which warns about itself
        from . import nameko_ext
    health: dict[str, str] = {}
    if not services:
        return health
    with nameko_ext.cluster_rpc(settings, HEALTH_TIMEOUT) as proxy:
        replies = {s: proxy[s].health.call_async() for s in services}
        for s, reply in replies.items():
            try:
                health[s] = str(reply.result().get("status", "?"))
            except nameko_ext.RpcTimeout:
                health[s] = f"no answer in {HEALTH_TIMEOUT:g}s"
            except Exception as e:  # noqa: BLE001 -- report any failure as "down"
                health[s] = broker.describe_exception(e).splitlines()[-1]
    return health


def supervisor_status(settings: Settings) -> dict[str, Any] | None:
    """platform-run's view of its children (`runner.state_path`), or None when no
    platform-run wrote one on this machine (compose, another host). Each process: pid, state
    (running, restarting, exited, stopped), restarts, last exit; and whether the runner lives."""
    from .runner import state_path

    try:
        state = json.loads(state_path(settings).read_text())
    except (OSError, ValueError):
        return None
    state["runner_alive"] = procs.alive(int(state.get("runner_pid") or 0))
    for p in state.get("processes", {}).values():
        if p.get("state") == "running" and not procs.alive(int(p.get("pid") or 0)):
            p["state"] = "exited"  # died since the runner last wrote; it will say so shortly
    return state


def unrouted_event_types(settings: Settings, queue: str, sample: int = 200) -> dict[str, int]:
    """event type -> count among the first `sample` messages of an unrouted queue (a peek:
    the management API takes them and puts them back)."""
    admin = RabbitAdmin(settings, timeout=5)
    try:
        r = requests.post(admin._url("queues", settings.amqp_vhost, queue, "get"), auth=admin.auth, timeout=5,
                          json={"count": sample, "ackmode": "ack_requeue_true", "encoding": "auto"})
        r.raise_for_status()
    except requests.RequestException:
        return {}
    types: dict[str, int] = {}
    for m in r.json():
        key = str(m.get("routing_key") or "?")
        types[key] = types.get(key, 0) + 1
    return types


def platform_status(settings: Settings) -> dict[str, Any]:
    """Everything `platformctl status` shows, as data:

    processes: [{name, up, detail}] for every service, the gateway and the relay;
    queues: [{name, ready, unacked, consumers, dead_letters}] (RPC reply queues left out);
    relay: [{producer, position, newest, lag}]; unrouted: [{producer, queue, messages,
    event_types}] (events published while no queue was bound for them); problems: [text];
    down: [process names].
    """
    admin = RabbitAdmin(settings, timeout=3)
    # RPC callers' private reply queues are noise (and exclusive to their connections).
    raw = [q for q in admin.queues() if not q["name"].startswith("rpc.reply-")]
    exact = exact_depths(settings, [q["name"] for q in raw])
    queues = []
    for q in sorted(raw, key=lambda q: q["name"]):
        ready, consumers = exact.get(q["name"], (q.get("messages_ready", 0), q.get("consumers", 0)))
        unacked = q.get("messages_unacknowledged", 0)
        total = ready + unacked
        queues.append({"name": q["name"], "ready": ready, "unacked": unacked, "consumers": consumers,
                       "dead_letters": total if q["name"].endswith(".dlq") else 0})
    consumers_of = {q["name"]: q["consumers"] for q in queues}
    # Events published while no queue was bound for them: the exchanges' alternate exchange
    # keeps them in <producer>.events.unrouted (broker.declare_exchange), never dropped.
    suffix = broker.unrouted_name("")  # ".events.unrouted"
    unrouted = [{"producer": q["name"][:-len(suffix)], "queue": q["name"],
                 "messages": q["ready"] + q["unacked"],
                 "event_types": unrouted_event_types(settings, q["name"]) if q["ready"] else {}}
                for q in queues if q["name"].endswith(suffix) and q["ready"] + q["unacked"] > 0]

    processes: list[dict[str, Any]] = []
    live = [s for s in SERVICES if consumers_of.get(f"rpc-{s}", 0) > 0]
    health = ping_services(settings, live)
    for s in SERVICES:
        state = health.get(s, "no consumer on rpc queue")
        processes.append({"name": s, "up": state == "ok", "detail": "health ok" if state == "ok" else state})

    url = f"http://{settings.gateway_host}:{settings.gateway_port}/health"
    try:
        up = requests.get(url, timeout=HEALTH_TIMEOUT).status_code == 200
        detail = url
    except requests.RequestException as e:
        up, detail = False, f"{url}: {type(e).__name__}"
    processes.append({"name": "gateway", "up": up, "detail": detail})

    # One database connection for everything the database tells; if PostgreSQL refuses it
    # (down, or out of connections), that is the problem to report, not a crash.
    relay: list[dict[str, Any]] = []
    db_problem = None
    try:
        with db_connect(settings, autocommit=True) as conn:
            names = {r[0] for r in conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE datname = %s", (settings.db_name,))}
            lag = relay_lag(settings, conn)
        missing = [p for p in PRODUCERS if relay_connection_name(p) not in names]
        processes.append({"name": "relay", "up": not missing, "detail": f"not relaying: {', '.join(missing)}"
                          if missing else f"relaying: {', '.join(PRODUCERS)}"})
        relay = [{"producer": p, "position": position, "newest": top, "lag": top - position}
                 for p, (position, top) in lag.items()]
    except psycopg.OperationalError as e:
        missing = []
        db_problem = f"PostgreSQL at {settings.db_host}:{settings.db_port}: {str(e).strip().splitlines()[-1]}"
        processes.append({"name": "relay", "up": False, "detail": "unknown: " + db_problem})

    down = [p["name"] for p in processes if not p["up"] and p["name"] != "relay"]
    down += [f"relay for {p}" for p in missing]
    problems = [f"{d} down" for d in down]
    if db_problem:
        down.append("postgresql")
        problems.append(db_problem)
    problems += [f"{q['dead_letters']} dead letter(s) in {q['name']}" for q in queues if q["dead_letters"]]
    supervisor = supervisor_status(settings)
    if supervisor is not None:
        if not supervisor["runner_alive"]:
            problems.append(f"platform-run (pid {supervisor.get('runner_pid')}) is not running")
        for name, p in supervisor.get("processes", {}).items():
            if p["state"] in ("restarting", "exited"):
                problems.append(f"{name} {p['state']}" + (f" (last exit {p['last_exit']['code']})"
                                                          if p.get("last_exit") else ""))
                if name not in down:
                    down.append(name)
            elif p.get("restarts"):
                problems.append(f"{name} restarted {p['restarts']} time(s), last exit "
                                f"{(p.get('last_exit') or {}).get('code')}")
    return {"processes": processes, "queues": queues, "relay": relay, "down": down, "problems": problems,
            "supervisor": supervisor, "unrouted": unrouted}
