"""platformctl: the operators' command line (status, event history and time travel, replay, projection
rebuilds, bootstrap users and tokens, closing billing periods).

Thin: one function per command over the shared plumbing (the relay's `message_for`, broker,
management API, services' RPC). Runs without eventlet; loads nameko (through nameko_ext)
only for commands that make RPC calls.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import uuid
import warnings
from dataclasses import dataclass
from datetime import timezone
from types import ModuleType
from typing import Any, Callable, Iterator, Sequence

import amqp
import psycopg
import requests
from eventsourcing.application import Application
from eventsourcing.persistence import Notification

from . import broker
from .contracts import ContractError
from .db import connect as db_connect
from .eventstore import events_channel, open_application
from .outbox import RelaySpec
from .rabbitadmin import RabbitAdmin
from .relay import PRODUCERS, load_spec, message_for
from .settings import Settings, load_settings
# Status figures are computed in one place, shared with the admin panel; relay_lag and
# exact_depths stay importable from here for scripts and tests.
from .status import exact_depths, platform_status, relay_lag, relay_position  # noqa: F401

RPC_TIMEOUT = 10.0
REPLAY_BATCH = 500


class CtlError(Exception):
    """A failure the operator can act on: printed as `error: ...`, exit code 1."""


# -- plumbing -------------------------------------------------------------------------------


def nameko_ext() -> ModuleType:
    """The nameko wiring (RPC client and its exceptions), imported only when a command needs it."""
    with warnings.catch_warnings():
        # Importing nameko imports eventlet, which warns about itself on every run.
        warnings.simplefilter("ignore")
        from . import nameko_ext as module
    return module


def rpc_call(settings: Settings, service: str, method: str, *args: Any) -> Any:
    """Call one RPC method; remote and transport failures become a CtlError."""
    ext = nameko_ext()
    try:
        with ext.cluster_rpc(settings, RPC_TIMEOUT) as proxy:
            return getattr(proxy[service], method)(*args)
    except ext.RemoteError as e:
        raise CtlError(e.value or e.exc_type) from None
    except (ext.UnknownService, ext.RpcTimeout):
        raise CtlError(f"the {service} service does not answer (is the platform running?)") from None


@contextlib.contextmanager
def open_store(producer: str, settings: Settings) -> Iterator[tuple[RelaySpec, Application]]:
    """A producer's relay spec and its event store (read through eventsourcing's recorder)."""
    if producer not in PRODUCERS:
        raise CtlError(f"unknown service {producer!r}; producers with a store: {', '.join(PRODUCERS)}")
    spec = load_spec(producer)
    app = open_application(spec.application, settings, pool_size=1, max_overflow=0)
    try:
        yield spec, app
    finally:
        app.close()


def describe_event(producer: str, spec: RelaySpec, app: Application, n: Notification) -> dict[str, Any]:
    domain_event = app.mapper.to_domain_event(n)
    out = spec.to_message(domain_event)
    return {
        "producer": producer,
        "position": n.id,
        "time": domain_event.timestamp.astimezone(timezone.utc),
        "topic": n.topic,
        "originator_id": str(n.originator_id),
        "version": n.originator_version,
        "event_type": out.event_type if out else "-",
    }


EVENT_HEADER = (f"{'service':<8} {'position':>8}  {'time (UTC)':<26} {'version':>7}  {'originator':<36}  "
                "event_type (topic)")


def format_event(e: dict[str, Any]) -> str:
    when = e["time"].strftime("%Y-%m-%dT%H:%M:%S.%f")
    kind = f"{e['event_type']} ({e['topic']})"
    return f"{e['producer']:<8} {e['position']:>8}  {when:<26} {e['version']:>7}  {e['originator_id']:<36}  {kind}"


def newest_notifications(app: Application, n: int) -> list[Notification]:
    """The newest `n` notifications, oldest first (ids may have gaps, so widen as needed)."""
    top = app.recorder.max_notification_id() or 0
    if n <= 0 or top == 0:
        return []
    window = n
    while True:
        start = max(top - window + 1, 1)
        found = list(app.recorder.select_notifications(start, limit=window, stop=top))
        if len(found) >= n or start == 1:
            return found[-n:]
        window *= 2


# -- consumers' queues and replay ------------------------------------------------------------


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: `*` is one word, `#` zero or more."""

    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and (p[0] == "*" or p[0] == k[0]) and match(p[1:], k[1:])

    return match(pattern.split("."), key.split("."))


def queue_belongs_to(queue: str, consumer: str) -> bool:
    """A BatchConsumer's queue is named after the consumer (`probe.sink`); a nameko event
    handler's is `evt-<source>-<event_type>--<service>.<method>`, so `billing` and
    `billing.on_organization_created` both name it."""
    if queue == consumer:
        return True
    if queue.startswith("evt-") and "--" in queue:
        handler = queue.split("--", 1)[1]
        return consumer in (handler, handler.split(".", 1)[0])
    return False


def consumer_queues(admin: RabbitAdmin, producer: str, consumer: str) -> dict[str, list[str]]:
    """The queues of `consumer` bound to `<producer>.events`, each with its binding keys."""
    exchange = broker.exchange_name(producer)
    bindings = [b for b in admin.bindings_of_exchange(exchange) if b.get("destination_type") == "queue"]
    queues: dict[str, list[str]] = {}
    for b in bindings:
        if queue_belongs_to(b["destination"], consumer):
            queues.setdefault(b["destination"], []).append(b["routing_key"])
    if not queues:
        known = sorted({b["destination"] for b in bindings})
        raise CtlError(
            f"no queue of consumer {consumer!r} is bound to {exchange}; "
            f"queues bound there: {', '.join(known) or 'none'} (is {consumer} running?)"
        )
    return queues


def replay(settings: Settings, producer: str, start: int, stop: int | None,
           queues: dict[str, list[str]]) -> dict[str, int]:
    """Publish the contract messages of positions start..stop to each queue whose bindings
    match their routing key, through the default exchange (so only that queue gets them),
    with publisher confirms. Returns how many messages each queue received."""
    delivered = {q: 0 for q in queues}
    with open_store(producer, settings) as (spec, app):
        publisher = broker.ConfirmingPublisher(settings)
        try:
            position = max(start, 1)
            while stop is None or position <= stop:
                batch = app.recorder.select_notifications(position, limit=REPLAY_BATCH, stop=stop)
                if not batch:
                    break
                for n in batch:
                    try:
                        routed = message_for(spec, app.mapper.to_domain_event(n), n.id)
                    except ContractError as e:
                        raise CtlError(f"{producer} position {n.id}: {e}") from None
                    if routed is None:
                        continue  # private event: never left the service
                    routing_key, message = routed
                    body = broker.encode(message)
                    for queue, keys in queues.items():
                        if any(topic_matches(k, routing_key) for k in keys):
                            publisher.publish("", queue, body, message_id=message["event_id"],
                                              headers={"x-replayed": True})
                            delivered[queue] += 1
                publisher.wait_for_confirms()
                position = batch[-1].id + 1
        finally:
            publisher.close()
    return delivered


# -- projections ---------------------------------------------------------------------------


def reset_billing_subscriptions(settings: Settings) -> None:
    rpc_call(settings, "billing", "reset_subscriptions")


def reset_probe_sink(settings: Settings) -> None:
    from .probe_consumer import SCHEMA

    with db_connect(settings) as conn, conn.transaction():
        conn.execute(f'DELETE FROM "{SCHEMA}".probe_effects WHERE consumer = %s', ("probe.sink",))
        conn.execute(f'DELETE FROM "{SCHEMA}".processed_messages WHERE consumer = %s', ("probe.sink",))


@dataclass(frozen=True)
class Projection:
    """A read model rebuilt by emptying it, then replaying its producer's history to it."""

    name: str
    producer: str
    consumer: str
    description: str
    reset: Callable[[Settings], None]
    # A read model the producer writes with its own events (same transaction): rebuilt from
    # its store by this "module:function" (settings) -> rows, not through a consumer's queue.
    from_store: str = ""


PROJECTIONS: dict[str, Projection] = {
    p.name: p
    for p in (
        Projection("billing.subscriptions", "orgs", "billing",
                   "billing's subscription per organization", reset_billing_subscriptions),
        Projection("projects.project_views", "projects", "projects",
                   "projects' own view of each project (lists and reads), written with its events",
                   lambda settings: None, from_store="services.projects.bootstrap:rebuild_views"),
        Projection("probe.sink", "probe", "probe.sink",
                   "the probe consumer's effects (probe.probe_effects)", reset_probe_sink),
    )
}


# -- commands ------------------------------------------------------------------------------


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    status = platform_status(settings)
    print("processes")
    for p in status["processes"]:
        print(f"  {p['name']:<12} {'up' if p['up'] else 'DOWN':<5} {p['detail']}")

    print("queues (ready / unacked / consumers; unacked as of the management API's last sample)")
    queues = status["queues"]
    width = max([len(q["name"]) for q in queues] + [10])
    for q in queues:
        flag = "  DEAD LETTERS" if q["dead_letters"] else ""
        print(f"  {q['name']:<{width}} {q['ready']:>7} {q['unacked']:>7} {q['consumers']:>4}{flag}")

    supervisor = status.get("supervisor")
    if supervisor is not None:
        print(f"supervisor (platform-run pid {supervisor.get('runner_pid')}, "
              f"{'running' if supervisor['runner_alive'] else 'NOT RUNNING'})")
        for name, p in supervisor.get("processes", {}).items():
            last = p.get("last_exit")
            tail = f"  last exit {last['code']} after {last['ran_s']}s" if last else ""
            wait = f"  restart in {p['restart_in_s']}s" if p.get("restart_in_s") is not None else ""
            print(f"  {name:<18} {p['state']:<10} pid {p['pid']:>7}  restarts {p['restarts']}{tail}{wait}")

    print("relay lag (events stored but not yet published)")
    for r in status["relay"]:
        print(f"  {r['producer']:<12} position {r['position']} of {r['newest']}  lag {r['lag']}")

    problems = status["problems"]
    print("ok" if not problems else "problems: " + "; ".join(problems))
    return 1 if status["down"] else 0


def cmd_events_tail(settings: Settings, args: argparse.Namespace) -> int:
    producers = [args.service] if args.service else list(PRODUCERS)
    stores = [open_store(p, settings) for p in producers]
    with contextlib.ExitStack() as stack:
        opened = {p: stack.enter_context(s) for p, s in zip(producers, stores)}
        events: list[dict[str, Any]] = []
        last: dict[str, int] = {}
        for p, (spec, app) in opened.items():
            # Read the top first: --follow then starts right after what was shown (or the top).
            top = app.recorder.max_notification_id() or 0
            found = newest_notifications(app, args.n)
            events += [describe_event(p, spec, app, n) for n in found]
            last[p] = max([top] + [n.id for n in found[-1:]])
        events.sort(key=lambda e: e["time"])
        print(EVENT_HEADER)
        for e in events[-args.n:] if args.n > 0 else []:
            print(format_event(e))
        if not args.follow:
            return 0
        sys.stdout.flush()
        with db_connect(settings, autocommit=True) as conn:
            for spec, _ in opened.values():
                conn.execute(f"LISTEN {events_channel(spec.application)}")
            try:
                while True:
                    for p, (spec, app) in opened.items():
                        for n in app.recorder.select_notifications(last[p], limit=1000, inclusive_of_start=False):
                            print(format_event(describe_event(p, spec, app, n)), flush=True)
                            last[p] = n.id
                    # Wake when a store says it has new events (or after a second anyway).
                    for _ in conn.notifies(timeout=1.0, stop_after=1):
                        pass
            except KeyboardInterrupt:
                return 0


def cmd_events_list(settings: Settings, args: argparse.Namespace) -> int:
    try:
        originator = uuid.UUID(args.aggregate)
    except ValueError:
        raise CtlError(f"--aggregate must be an aggregate id (a UUID), not {args.aggregate!r}") from None
    producers = [args.service] if args.service else list(PRODUCERS)
    found = 0
    print(EVENT_HEADER)
    for p in producers:
        with open_store(p, settings) as (spec, app):
            recorder: Any = app.recorder
            # The recorder has no "notifications of one aggregate" query; read its table.
            with recorder.datastore.get_connection() as conn:
                rows = conn.execute(
                    f'SELECT notification_id, originator_version, topic, state FROM '
                    f'"{recorder.datastore.schema}"."{recorder.events_table_name}" '
                    "WHERE originator_id = %s ORDER BY originator_version",
                    (originator,),
                ).fetchall()
            for r in rows:
                n = Notification(id=r["notification_id"], originator_id=originator,
                                 originator_version=r["originator_version"], topic=r["topic"], state=bytes(r["state"]))
                print(format_event(describe_event(p, spec, app, n)))
                found += 1
    if not found:
        raise CtlError(f"no stored events for aggregate {originator} in {', '.join(producers)}")
    return 0


def cmd_events_replay(settings: Settings, args: argparse.Namespace) -> int:
    if args.to is not None and args.to < args.from_:
        raise CtlError(f"--to {args.to} is before --from {args.from_}")
    queues = consumer_queues(RabbitAdmin(settings), args.service, args.consumer)
    delivered = replay(settings, args.service, args.from_, args.to, queues)
    span = f"{args.from_}..{args.to if args.to is not None else 'end'}"
    for queue, n in delivered.items():
        print(f"delivered {n} message(s) from {args.service} positions {span} to {queue}")
    return 0


def cmd_projections_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    projection = PROJECTIONS.get(args.name)
    if projection is None:
        raise CtlError(f"unknown projection {args.name!r}; rebuildable: {', '.join(PROJECTIONS)}")
    if projection.from_store:
        import importlib

        module, _, function = projection.from_store.partition(":")
        rows = getattr(importlib.import_module(module), function)(settings)
        print(f"rebuilt {projection.name} from {projection.producer}'s store: {rows} row(s)")
        return 0
    # Find the consumer's queues before emptying anything: a rebuild that cannot replay
    # must not leave the read model empty.
    queues = consumer_queues(RabbitAdmin(settings), projection.producer, projection.consumer)
    projection.reset(settings)
    print(f"reset {projection.name}")
    delivered = replay(settings, projection.producer, 1, None, queues)
    for queue, n in delivered.items():
        print(f"delivered {n} message(s) from {projection.producer} positions 1..end to {queue}")
    return 0


def cmd_projections_list(settings: Settings, args: argparse.Namespace) -> int:
    for p in PROJECTIONS.values():
        print(f"{p.name:<24} {p.producer} -> {p.consumer}: {p.description}")
    return 0


def _history(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    from .errors import InvalidInput, NotFound

    try:
        return call()
    except (InvalidInput, NotFound) as e:
        raise CtlError(str(e)) from None


def cmd_history_state(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from . import history

    found = _history(lambda: history.state_at(settings, args.kind, args.id, args.at))
    print(f"{found['kind']} {found['key']} at {found['at']}: version {found['version']} of {found['head']}")
    print(json.dumps(found["state"], indent=2, sort_keys=True, default=str))
    return 0


def cmd_history_diff(settings: Settings, args: argparse.Namespace) -> int:
    from . import history

    found = _history(lambda: history.diff_between(settings, args.kind, args.id, args.from_, args.to))
    print(f"{found['kind']} {found['key']}: version {found['from_version']} -> {found['to_version']}")
    print("changes")
    for c in found["changes"]:
        print(f"  {c['field']}: {c['from']!r} -> {c['to']!r}")
    if not found["changes"]:
        print("  (none)")
    print("events")
    for e in found["events"]:
        print(f"  v{e['version']:<4} position {e['position']:<7} {e['time']}  {e['event']:<30} "
              f"actor {e['actor'] or '-'}  correlation {e['correlation_id'] or '-'}")
    return 0


def _integrators() -> ModuleType:
    from . import integrators

    return integrators


def _consumers_call(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except _integrators().IntegratorError as e:
        raise CtlError(str(e)) from None


def cmd_consumers_create(settings: Settings, args: argparse.Namespace) -> int:
    ig = _integrators()
    created = _consumers_call(lambda: ig.create(settings, args.name, args.events.split(","), args.from_))
    print(f"consumer {created['name']}: queue {created['queue']} bound to {', '.join(created['events'])}")
    for producer, n in created["replayed"].items():
        if args.from_ is not None:
            print(f"back-filled {n} message(s) from {producer} positions {args.from_}..end")
    # Only the URL on stdout, so `URL=$(platformctl consumers create ...)` works; shown once.
    print(ig.amqp_url(settings, created))
    print(f"broker user {created['user']} may only read {created['queue']}; its password is shown once, above",
          file=sys.stderr)
    return 0


def cmd_consumers_list(settings: Settings, args: argparse.Namespace) -> int:
    found = _integrators().consumers(settings)
    print(f"{'consumer':<24} {'ready':>7} {'unacked':>7} {'connected':>9}  events")
    for c in found:
        print(f"{c['name']:<24} {c['ready']:>7} {c['unacked']:>7} {c['connected']:>9}  {','.join(c['events'])}")
    if not found:
        print("no consumers (create one with `platformctl consumers create NAME --events a,b`)", file=sys.stderr)
    return 0


def cmd_consumers_lag(settings: Settings, args: argparse.Namespace) -> int:
    c = _consumers_call(lambda: _integrators().get(settings, args.name))
    print(f"{c['name']}: {c['ready'] + c['unacked']} message(s) not yet acknowledged "
          f"({c['ready']} waiting, {c['unacked']} delivered), {c['connected']} connection(s) consuming")
    return 0


def cmd_consumers_delete(settings: Settings, args: argparse.Namespace) -> int:
    c = _consumers_call(lambda: _integrators().delete(settings, args.name))
    print(f"deleted consumer {c['name']}: queue {c['queue']} ({c['ready']} message(s) dropped) and its broker user")
    return 0


def consumer_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every consumer's declared contract versions against what producers emit now (the
    newest registered version): reads it as is, through an adapter, or cannot."""
    from .contracts import REGISTRY, adapt
    from .contracts.consumers import declared_consumers

    newest: dict[str, int] = {}
    for (event_type, version) in REGISTRY:
        newest[event_type] = max(version, newest.get(event_type, 0))
    found = []
    for h in declared_consumers():
        current = newest.get(h.event_type, 1)
        if current in h.versions:
            how = "reads it"
        else:
            try:
                adapt({"event_type": h.event_type, "schema_version": current, "payload": {}}, list(h.versions))
                how = "reads it through the adapter"
            except ContractError:
                how = "CANNOT read it"
        found.append({"consumer": h.consumer, "event_type": h.event_type, "accepts": list(h.versions),
                      "emitted": current, "how": how})
    for c in _integrators().consumers(settings):
        for event_type in c["events"]:
            current = newest.get(event_type, 1)
            older = sorted(v for (t, v) in REGISTRY if t == event_type and v < current)
            found.append({"consumer": f"integration.{c['name']}", "event_type": event_type, "accepts": None,
                          "emitted": current,
                          "how": f"receives v{current} (readers of v{', v'.join(map(str, older))} use its x-adapts-to)"
                          if older else f"receives v{current}"})
    return found


def relay_lag_of(settings: Settings, producer: str, conn: psycopg.Connection) -> tuple[int, int]:
    from .status import newest_position

    spec = load_spec(producer)
    return relay_position(settings, spec, conn), newest_position(spec, conn)


def cmd_upgrade_check(settings: Settings, args: argparse.Namespace) -> int:
    from .migrations import MIGRATIONS, pending

    problems: list[str] = []
    waiting = pending(settings)
    print(f"migrations of the platform database ({len(MIGRATIONS) - len(waiting)} of {len(MIGRATIONS)} applied)")
    for m in waiting:
        print(f"  PENDING {m.id}: {m.description}")
    if waiting:
        problems.append(f"{len(waiting)} pending migration(s): run `platformctl upgrade migrate`")
    print("consumers and contract versions (producers emit the newest)")
    for c in consumer_versions(settings):
        accepts = "v" + ", v".join(map(str, c["accepts"])) if c["accepts"] else "-"
        print(f"  {c['consumer']:<44} {c['event_type']:<26} accepts {accepts:<8} emitted v{c['emitted']}: {c['how']}")
        if c["how"].startswith("CANNOT"):
            problems.append(f"{c['consumer']} cannot read {c['event_type']} v{c['emitted']}")
    dead = [(q["name"], int(q.get("messages") or 0)) for q in RabbitAdmin(settings).queues()
            if q["name"].endswith(".dlq") and q.get("messages")]
    print("dead-letter queues")
    for name, n in dead:
        print(f"  {name}: {n} message(s)")
    if not dead:
        print("  all empty")
    else:
        problems.append(f"{sum(n for _, n in dead)} dead-lettered message(s): look at them (and "
                        "replay or drop them) before upgrading")
    with db_connect(settings, autocommit=True) as conn:
        lagging = []
        for producer in PRODUCERS:
            try:
                position, newest = relay_lag_of(settings, producer, conn)
            except psycopg.errors.UndefinedTable:
                continue  # a store never written to (its schema is made when first used)
            if newest > position:
                lagging.append(f"{producer} {newest - position}")
    if lagging:
        problems.append("relay lag (stop writers and let the relay finish first): " + ", ".join(lagging))
    print("ready to upgrade" if not problems else "not ready: " + "; ".join(problems))
    return 1 if problems else 0


def cmd_upgrade_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from .migrations import migrate

    done = migrate(settings)
    for m in done:
        print(f"applied {m}")
    print("no pending migrations" if not done else f"{len(done)} migration(s) applied")
    return 0


def cmd_users_create(settings: Settings, args: argparse.Namespace) -> int:
    user = rpc_call(settings, "orgs", "register_user", args.email, args.password, {"actor": "platformctl"})
    print(f"created user {user['id']} {user['email']}")
    return 0


def cmd_users_promote(settings: Settings, args: argparse.Namespace) -> int:
    user = rpc_call(settings, "orgs", "promote_user", args.email, {"actor": "platformctl"})
    print(f"{user['email']} ({user['id']}) is a platform admin: the dashboard shows them the admin panel")
    return 0


def cmd_tokens_create(settings: Settings, args: argparse.Namespace) -> int:
    issued = rpc_call(settings, "orgs", "issue_token", args.email, args.name, {"actor": "platformctl"})
    # Only the token on stdout, so `T=$(platformctl tokens create ...)` works.
    print(issued["token"])
    print(f"personal access token {issued['name']!r} for {args.email}; shown once, stored only as a hash",
          file=sys.stderr)
    return 0


def cmd_mail_list(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from .mail import OutboxMailer, outbox_dir

    if settings.mail_backend != "outbox":
        print(f"mail goes out by {settings.mail_backend}; the local outbox is not used", file=sys.stderr)
    mails = [m for m in OutboxMailer(outbox_dir(settings)).list() if not args.to or m.to == args.to.lower()]
    for m in mails[-args.n:]:
        at = datetime.fromtimestamp(m.sent_at, timezone.utc).isoformat(timespec="seconds")
        print(f"{at}  to {m.to}  {m.subject}")
        if args.body:
            print("    " + m.body.rstrip().replace("\n", "\n    "))
    if not mails:
        print(f"no mail in {outbox_dir(settings)}", file=sys.stderr)
    return 0


def cmd_billing_close_period(settings: Settings, args: argparse.Namespace) -> int:
    invoice = rpc_call(settings, "billing", "close_period", args.org, args.period, {"actor": "platformctl"})
    print(f"invoice {invoice['id']} {invoice['org_slug']} {invoice['period']} on {invoice['rated_plan']}: "
          f"{invoice['total']} {invoice['currency'].upper()} ({invoice['status']})")
    for line in invoice["lines"]:
        print(f"  {line['line']:>3}  {line['amount']:>12}  {line['description']}")
    return 0


# -- command line --------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:
        # Every failure exits 1 (argparse would use 2 for usage errors).
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def billing_period(text: str) -> str:
    """A billing period: a calendar month, YYYY-MM."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
        raise argparse.ArgumentTypeError(f"must be a month YYYY-MM, not {text!r}")
    return text


def count(text: str) -> int:
    """A position or a number of events: an integer >= 0."""
    if not re.fullmatch(r"\d+", text):
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, not {text!r}")
    return int(text)


def build_parser() -> Parser:
    parser = Parser(prog="platformctl", description="Operate the platform: status, events, replay, projections.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser("status", help="processes, queue depths, relay lag")
    status.set_defaults(func=cmd_status)

    events = commands.add_parser("events", help="read or replay a service's stored events")
    ev = events.add_subparsers(dest="events_command", required=True, metavar="SUBCOMMAND")
    tail = ev.add_parser("tail", help="the newest stored events")
    tail.add_argument("--service", choices=list(PRODUCERS), help="one producer (default: all)")
    tail.add_argument("-n", type=count, default=20, help="how many events (default 20)")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C")
    tail.set_defaults(func=cmd_events_tail)
    lst = ev.add_parser("list", help="every stored event of one aggregate, in version order")
    lst.add_argument("--aggregate", required=True, metavar="ID", help="the aggregate's id (originator id)")
    lst.add_argument("--service", choices=list(PRODUCERS), help="one producer (default: all)")
    lst.set_defaults(func=cmd_events_list)
    rp = ev.add_parser("replay", help="re-deliver a range of history to one consumer's queue(s)")
    rp.add_argument("--service", required=True, choices=list(PRODUCERS), help="producer whose history to replay")
    rp.add_argument("--from", dest="from_", required=True, type=count, metavar="N", help="first position")
    rp.add_argument("--to", type=count, metavar="M", help="last position (default: the newest)")
    rp.add_argument("--consumer", required=True, metavar="C",
                    help="consumer: a queue name (probe.sink), a service (billing) or service.method")
    rp.set_defaults(func=cmd_events_replay)

    projections = commands.add_parser("projections", help="rebuild read models")
    pj = projections.add_subparsers(dest="projections_command", required=True, metavar="SUBCOMMAND")
    rebuild = pj.add_parser("rebuild", help="empty a read model and replay its history from position 0")
    rebuild.add_argument("name", metavar="NAME", help=f"one of: {', '.join(PROJECTIONS)}")
    rebuild.set_defaults(func=cmd_projections_rebuild)
    pj.add_parser("list", help="rebuildable read models").set_defaults(func=cmd_projections_list)

    history = commands.add_parser("history", help="an aggregate as it was at a past time, and what changed since")
    hs = history.add_subparsers(dest="history_command", required=True, metavar="SUBCOMMAND")
    kinds = "organization, project, subscription, function, saga (realtime-config: not event-sourced yet)"
    st = hs.add_parser("state", help="an aggregate's state at a time or log position")
    st.add_argument("kind", metavar="KIND", help=kinds)
    st.add_argument("id", metavar="ID", help="its natural key (slug, ref, ref/slug, operation id) or aggregate UUID")
    st.add_argument("--at", metavar="WHEN", help="an ISO time (UTC unless it says) or a log position (default: now)")
    st.set_defaults(func=cmd_history_state)
    df = hs.add_parser("diff", help="what changed between two points, by whom, through which request")
    df.add_argument("kind", metavar="KIND", help=kinds)
    df.add_argument("id", metavar="ID", help="its natural key or aggregate UUID")
    df.add_argument("--from", dest="from_", required=True, metavar="WHEN", help="an ISO time or log position")
    df.add_argument("--to", metavar="WHEN", help="an ISO time or log position (default: now)")
    df.set_defaults(func=cmd_history_diff)

    consumers = commands.add_parser("consumers", help="integrators' own queues of chosen event types")
    cs = consumers.add_subparsers(dest="consumers_command", required=True, metavar="SUBCOMMAND")
    cc = cs.add_parser("create", help="a durable queue bound to event types, with its own read-only broker user")
    cc.add_argument("name", metavar="NAME", help="a-z, 0-9 and '-'; the queue is integration.NAME")
    cc.add_argument("--events", required=True, metavar="A,B", help="event types (see docs/events.md)")
    cc.add_argument("--from", dest="from_", type=count, metavar="N",
                    help="back-fill history from this position of each producer's log first (0: all of it)")
    cc.set_defaults(func=cmd_consumers_create)
    cs.add_parser("list", help="every integrator's consumer").set_defaults(func=cmd_consumers_list)
    cl = cs.add_parser("lag", help="messages waiting for one consumer")
    cl.add_argument("name", metavar="NAME")
    cl.set_defaults(func=cmd_consumers_lag)
    cd = cs.add_parser("delete", help="delete a consumer's queue and broker user")
    cd.add_argument("name", metavar="NAME")
    cd.set_defaults(func=cmd_consumers_delete)

    upgrade = commands.add_parser("upgrade", help="is the running database and broker ready for new code")
    ug = upgrade.add_subparsers(dest="upgrade_command", required=True, metavar="SUBCOMMAND")
    ug.add_parser("check", help="pending migrations, consumers' contract versions, dead letters, relay lag "
                  "(exit 1 if not ready)").set_defaults(func=cmd_upgrade_check)
    ug.add_parser("migrate", help="apply the platform database's pending migrations").set_defaults(
        func=cmd_upgrade_migrate)

    users = commands.add_parser("users", help="bootstrap users and platform admins")
    us = users.add_subparsers(dest="users_command", required=True, metavar="SUBCOMMAND")
    uc = us.add_parser("create", help="create a user")
    uc.add_argument("--email", required=True)
    uc.add_argument("--password", required=True)
    uc.set_defaults(func=cmd_users_create)
    up = us.add_parser("promote", help="make a user a platform admin (admin panel, all organizations)")
    up.add_argument("--email", required=True)
    up.set_defaults(func=cmd_users_promote)

    tokens = commands.add_parser("tokens", help="personal access tokens")
    tk = tokens.add_subparsers(dest="tokens_command", required=True, metavar="SUBCOMMAND")
    tc = tk.add_parser("create", help="issue a token (sbp_...) for a user; prints it once")
    tc.add_argument("--email", required=True)
    tc.add_argument("--name", default="platformctl", help="a label for the token")
    tc.set_defaults(func=cmd_tokens_create)

    mail = commands.add_parser("mail", help="the local mail outbox (invitations, alerts)")
    ml = mail.add_subparsers(dest="mail_command", metavar="SUBCOMMAND", required=True)
    mlist = ml.add_parser("list", help="messages the platform sent, oldest first")
    mlist.add_argument("--to", help="only messages to this address")
    mlist.add_argument("-n", type=int, default=50, help="at most this many (the newest)")
    mlist.add_argument("--body", action="store_true", help="print each message's body too")
    mlist.set_defaults(func=cmd_mail_list)

    billing = commands.add_parser("billing", help="billing periods and invoices")
    bl = billing.add_subparsers(dest="billing_command", required=True, metavar="SUBCOMMAND")
    cp = bl.add_parser("close-period", help="close an organization's month into its invoice (again: the same invoice)")
    cp.add_argument("--org", required=True, metavar="SLUG", help="the organization's slug")
    cp.add_argument("--period", required=True, type=billing_period, metavar="YYYY-MM", help="an ended month")
    cp.set_defaults(func=cmd_billing_close_period)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = load_settings()
    try:
        return int(args.func(settings, args))
    except CtlError as e:
        print(f"error: {e}", file=sys.stderr)
    except psycopg.OperationalError as e:
        print(f"error: PostgreSQL at {settings.db_host}:{settings.db_port} "
              f"(database {settings.db_name}): {str(e).strip()}", file=sys.stderr)
    except requests.RequestException as e:
        why = f"unreachable ({type(e).__name__})" if isinstance(e, requests.ConnectionError) else str(e)
        print(f"error: RabbitMQ management API at {settings.rabbitmq_management_url}: {why}", file=sys.stderr)
    except (OSError, amqp.exceptions.AMQPError, broker.PublishError) as e:
        print(f"error: RabbitMQ at {settings.amqp_host}:{settings.amqp_port} "
              f"(vhost {settings.amqp_vhost}): {broker.describe_exception(e)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
