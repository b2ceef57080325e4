"""Time travel over the event stores: an aggregate as it was at a time or log position, what
changed between two points (by whom, through which request), and a timeline of its events.

Reads a producer's store through eventsourcing (its recorder, mapper and repository) with
snapshotting on: snapshots live in `<service>.<service>_snapshots`, taken here every
`SNAPSHOT_INTERVAL` versions the first time an aggregate is read, so a state-at query replays
at most one interval of events. Imports no nameko; the relay's producer table names the stores.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

from .errors import InvalidInput, NotFound
from .secretnames import is_secret_name
from .settings import Settings

SNAPSHOT_INTERVAL = 100
# Field names whose values are secrets (encrypted or hashed) are shown as a reference, never as
# a value: services/shared/secretnames.py says which.


@dataclass(frozen=True)
class Kind:
    name: str
    producer: str
    aggregate: str  # "module:Class"
    key: str  # what the natural key is, for messages
    to_id: Callable[[str], uuid.UUID]
    # Fields as the API shows them, computed from the aggregate: name -> "module:function".
    views: tuple[tuple[str, str], ...] = ()

    def aggregate_class(self) -> type[Aggregate]:
        return load(self.aggregate)  # type: ignore[no-any-return]


def load(path: str) -> Any:
    """`module:attr.attr` by name (this module loads services by name, as the relay does)."""
    import importlib

    module, attrs = path.split(":")
    found: Any = importlib.import_module(module)
    for a in attrs.split("."):
        found = getattr(found, a)
    return found


def _id_of(aggregate: str, *fields: str) -> Callable[[str], uuid.UUID]:
    def to_id(key: str) -> uuid.UUID:
        parts = key.split("/") if len(fields) > 1 else [key]
        if len(parts) != len(fields) or not all(parts):
            raise InvalidInput(f"expected {'/'.join(fields)}, not {key!r}")
        return load(aggregate).create_id(**dict(zip(fields, parts)))  # type: ignore[attr-defined,no-any-return]

    return to_id


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("organization", "orgs", "services.orgs.domain:Organization", "slug",
             _id_of("services.orgs.domain:Organization", "slug")),
        Kind("project", "projects", "services.projects.domain:Project", "ref",
             _id_of("services.projects.domain:Project", "ref"),
             views=(("auth_effective", "services.projects.application:ProjectsApplication._auth_view"),)),
        Kind("subscription", "billing", "services.billing.domain:Subscription", "organization slug",
             _id_of("services.billing.domain:Subscription", "org_slug")),
        Kind("function", "functions", "services.functions.domain:Function", "project ref/function slug",
             _id_of("services.functions.domain:Function", "ref", "slug")),
        Kind("saga", "provisioner", "services.provisioner.domain:Saga", "operation id",
             _id_of("services.provisioner.domain:Saga", "operation_id")),
        Kind("realtime-config", "realtime", "services.realtime.domain:ProjectRealtime", "ref",
             _id_of("services.realtime.domain:ProjectRealtime", "ref")),
    )
}
# Kinds people ask for that have no event-sourced aggregate yet: the answer says so.
NOT_EVENT_SOURCED: dict[str, str] = {}


def kind_of(name: str) -> Kind:
    if name in NOT_EVENT_SOURCED:
        raise InvalidInput(NOT_EVENT_SOURCED[name])
    if name not in KINDS:
        raise InvalidInput(f"unknown kind {name!r}; one of: {', '.join([*KINDS, *NOT_EVENT_SOURCED])}")
    return KINDS[name]


@dataclass(frozen=True)
class Point:
    """Where in history: a log position of the producer (an int), or a time."""

    position: int | None = None
    time: datetime | None = None

    @staticmethod
    def parse(text: str) -> "Point":
        text = text.strip()
        if text.isdigit():
            return Point(position=int(text))
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(f"expected a log position (an integer) or an ISO time, not {text!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)  # times without a zone are UTC, as stored
        return Point(time=when)

    def __str__(self) -> str:
        return f"position {self.position}" if self.position is not None else str(self.time and self.time.isoformat())


def attribution(domain_event: Any) -> dict[str, Any]:
    """Who and which request: the `meta` a command recorded (actor, correlation and causation
    ids); an event applied from another service's message names that message as its cause."""
    meta = getattr(domain_event, "meta", None) or {}
    message_id = getattr(domain_event, "message_id", None)
    return {
        "actor": meta.get("actor") or ("system" if message_id or not meta else None),
        "correlation_id": meta.get("correlation_id"),
        "causation_id": meta.get("causation_id") or message_id,
    }


def redact(value: Any, name: str = "") -> Any:
    if is_secret_name(name) and value not in (None, ""):
        # A reference to the stored (encrypted or hashed) value: shows that it changed, not what it is.
        return "secret:" + hashlib.sha256(str(value).encode()).hexdigest()[:12]
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def state_of(aggregate: Aggregate, views: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """The aggregate's attributes as plain data, secrets as references, and the kind's views
    (settings as the API shows them: defaults with the recorded changes)."""
    out: dict[str, Any] = {"id": str(aggregate.id), "version": aggregate.version,
                           "created_on": redact(aggregate.created_on), "modified_on": redact(aggregate.modified_on)}
    for k, v in vars(aggregate).items():
        if not k.startswith("_"):
            out[k] = redact(v, k)
    for name, path in views:
        out[name] = redact(load(path)(aggregate))
    return out


def diff(before: dict[str, Any] | None, after: dict[str, Any]) -> list[dict[str, Any]]:
    """Changed fields, one level into dicts (`postgrest.max_rows`)."""
    changes: list[dict[str, Any]] = []
    before = before or {}
    for key in sorted(set(before) | set(after)):
        if key in ("version", "modified_on"):
            continue
        a, b = before.get(key), after.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            for sub in sorted(set(a) | set(b)):
                if a.get(sub) != b.get(sub):
                    changes.append({"field": f"{key}.{sub}", "from": a.get(sub), "to": b.get(sub)})
        else:
            changes.append({"field": key, "from": a, "to": b})
    return changes


class History:
    """One producer's store opened for reading history (and writing snapshots)."""

    def __init__(self, app: Application, views: tuple[tuple[str, str], ...] = ()):
        self.app = app
        self.views = views
        recorder: Any = app.recorder
        self._schema = recorder.datastore.schema
        self._table = recorder.events_table_name

    # -- the versions of one aggregate ---------------------------------------------------------
    def head(self, originator: uuid.UUID) -> int:
        found = list(self.app.recorder.select_events(originator, desc=True, limit=1))
        return found[0].originator_version if found else 0

    def _event(self, originator: uuid.UUID, version: int) -> Any:
        stored = list(self.app.recorder.select_events(originator, gt=version - 1, lte=version, limit=1))
        return self.app.mapper.to_domain_event(stored[0])

    def version_at(self, originator: uuid.UUID, point: Point) -> int:
        """The aggregate's last version at `point` (0: it did not exist yet)."""
        if point.position is not None:
            recorder: Any = self.app.recorder
            with recorder.datastore.get_connection() as conn:
                row = conn.execute(
                    f'SELECT max(originator_version) AS v FROM "{self._schema}"."{self._table}" '
                    "WHERE originator_id = %s AND notification_id <= %s", (originator, point.position)).fetchone()
            return int(row["v"] or 0)
        # Timestamps grow with versions: binary search, decoding about log2(n) events.
        lo, hi = 0, self.head(originator)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self._event(originator, mid).timestamp <= point.time:
                lo = mid
            else:
                hi = mid - 1
        return lo

    # -- snapshots -----------------------------------------------------------------------------
    def ensure_snapshots(self, originator: uuid.UUID, upto: int) -> None:
        """Snapshot every SNAPSHOT_INTERVAL versions up to `upto`, from the newest snapshot on
        (each one is built from the one before plus one interval of events)."""
        snapshots = self.app.snapshots
        if snapshots is None or upto < SNAPSHOT_INTERVAL:
            return
        newest = list(snapshots.get(originator, desc=True, limit=1))
        start = newest[0].originator_version if newest else 0
        for version in range(start - start % SNAPSHOT_INTERVAL + SNAPSHOT_INTERVAL, upto + 1, SNAPSHOT_INTERVAL):
            self.app.take_snapshot(originator, version=version)

    # -- queries -------------------------------------------------------------------------------
    def state(self, originator: uuid.UUID, version: int) -> dict[str, Any] | None:
        if version <= 0:
            return None
        self.ensure_snapshots(originator, version)
        return state_of(self.app.repository.get(originator, version=version), self.views)

    def events(self, originator: uuid.UUID, after: int = 0, upto: int | None = None) -> list[dict[str, Any]]:
        """The aggregate's events with versions in (after, upto], with positions and attribution."""
        recorder: Any = self.app.recorder
        with recorder.datastore.get_connection() as conn:
            positions = {r["originator_version"]: r["notification_id"] for r in conn.execute(
                f'SELECT originator_version, notification_id FROM "{self._schema}"."{self._table}" '
                "WHERE originator_id = %s AND originator_version > %s AND originator_version <= %s",
                (originator, after, upto if upto is not None else 2**62)).fetchall()}
        out = []
        for e in self.app.events.get(originator, gt=after, lte=upto):
            out.append({"version": e.originator_version, "position": positions.get(e.originator_version),
                        "time": redact(e.timestamp), "event": type(e).__qualname__, **attribution(e)})
        return out


@contextlib.contextmanager
def open_history(producer: str, settings: Settings, views: tuple[tuple[str, str], ...] = ()) -> Iterator[History]:
    """A producer's store with snapshotting on (the snapshot table is created if missing)."""
    from .relay import load_spec

    spec = load_spec(producer)
    env = settings.eventstore_env(spec.application.name, 1, 0)
    env["IS_SNAPSHOTTING_ENABLED"] = "y"
    app = spec.application(env=env)
    try:
        yield History(app, views)
    finally:
        app.close()


def _resolve(kind: Kind, key: str) -> uuid.UUID:
    try:
        return uuid.UUID(key)
    except ValueError:
        return kind.to_id(key)


@contextlib.contextmanager
def _recorded(settings: Settings, kind_name: str, key: str) -> Iterator[tuple[Kind, uuid.UUID, History, int]]:
    """(kind, originator id, its store's history, head version) of an aggregate that has
    events; NotFound otherwise."""
    kind = kind_of(kind_name)
    originator = _resolve(kind, key)
    with open_history(kind.producer, settings, kind.views) as h:
        head = h.head(originator)
        if head == 0:
            raise NotFound(f"no {kind.name} {key!r} in the {kind.producer} store")
        yield kind, originator, h, head


def state_at(settings: Settings, kind_name: str, key: str, at: str | None) -> dict[str, Any]:
    with _recorded(settings, kind_name, key) as (kind, originator, h, head):
        point = Point.parse(at) if at else None
        version = h.version_at(originator, point) if point else head
        if version == 0:
            raise NotFound(f"{kind.name} {key!r} did not exist yet at {point}")
        return {"kind": kind.name, "key": key, "at": str(point) if point else "now", "version": version,
                "head": head, "state": h.state(originator, version)}


def diff_between(settings: Settings, kind_name: str, key: str, start: str, end: str | None) -> dict[str, Any]:
    with _recorded(settings, kind_name, key) as (kind, originator, h, head):
        v1 = h.version_at(originator, Point.parse(start))
        v2 = h.version_at(originator, Point.parse(end)) if end else head
        if v2 < v1:
            raise InvalidInput(f"--to ({end}) is before --from ({start})")
        before, after = h.state(originator, v1), h.state(originator, v2)
        return {"kind": kind.name, "key": key, "from_version": v1, "to_version": v2,
                "changes": diff(before, after or {}) if after else [], "events": h.events(originator, v1, v2)}


def timeline(settings: Settings, kind_name: str, key: str) -> dict[str, Any]:
    kind = kind_of(kind_name)
    originator = _resolve(kind, key)
    with open_history(kind.producer, settings, kind.views) as h:
        events = h.events(originator)
        if not events:
            raise NotFound(f"no {kind.name} {key!r} in the {kind.producer} store")
        return {"kind": kind.name, "key": key, "events": events}


def view(settings: Settings, kind_name: str, key: str, at: str | None,
         producer: str | None = None) -> dict[str, Any]:
    """State at `at` (default: now) and the whole timeline, for the admin panel. A service
    answers only for the kinds its own store holds (`producer`)."""
    kind = kind_of(kind_name)
    if producer is not None and kind.producer != producer:
        raise InvalidInput(f"{kind.name} history is kept by {kind.producer}, not {producer}")
    found = state_at(settings, kind_name, key, at)
    found["events"] = timeline(settings, kind_name, key)["events"]
    return found
