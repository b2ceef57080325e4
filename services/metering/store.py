"""metering's usage store: the ledger of folded records and the period aggregates, in plain SQL.

Imports psycopg, the standard library and `periods`. Why not event-sourced: usage arrives in
large volumes (tens of thousands of records a second), and an aggregate save per record
would be the bottleneck for nothing; what must be exact is kept exact by construction:

- every fold appends one row to `usage_ledger` holding its records, in the same transaction
  as the aggregate upserts, so the aggregates always equal a fold of the ledger (`verify`
  recomputes them from it independently; `rebuild` re-derives them from it);
- the caller deduplicates (consumer claims on the messages' event_ids, or the ledger's own
  primary key for a sample run) in that same transaction, so nothing counts twice.

Aggregates, per project (`project_usage`) and per organization (`org_usage`), for each
granularity hour / day / ISO week / calendar month:
- counters (requests, egress, invocations, messages): the sum of the records in the period;
- gauges (database and storage size): a project's value is the peak sample in the period;
  an organization's hourly value is the sum of its projects' hourly peaks, and its value
  for a longer period is the peak of those hourly values (what the org held at its busiest).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import defaultdict
from typing import Any, Iterable, Iterator, Sequence

import psycopg
from psycopg_pool import ConnectionPool

from services.shared.consuming import claim

from .periods import (GAUGES, GRANULARITIES, METRICS, Record, cover, hour_start, iso, period_start,
                      periods_between, starts_of)

SCHEMA = "metering"

# The ledger keeps records as `json` text (not jsonb): nothing queries inside it, it is only
# read back whole, and storing the text as sent costs PostgreSQL no parse into binary form.
# The aggregate tables leave room in each page (fillfactor 70) so that adding to a row is a
# HOT update that touches no index: most folds update rows that exist.
DDL = """
CREATE TABLE IF NOT EXISTS {schema}.usage_ledger (
    ledger_id uuid PRIMARY KEY,
    source text NOT NULL,
    event_ids uuid[] NOT NULL DEFAULT '{{}}',
    record_count integer NOT NULL,
    records json NOT NULL,
    folded_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.project_usage (
    project_ref text NOT NULL,
    metric text NOT NULL,
    granularity text NOT NULL,
    period_start timestamptz NOT NULL,
    org_slug text NOT NULL,
    quantity bigint NOT NULL,
    PRIMARY KEY (project_ref, metric, granularity, period_start)
) WITH (fillfactor = 70);
CREATE INDEX IF NOT EXISTS project_usage_months_by_org ON {schema}.project_usage (org_slug, period_start)
    WHERE granularity = 'month';
CREATE TABLE IF NOT EXISTS {schema}.org_usage (
    org_slug text NOT NULL,
    metric text NOT NULL,
    granularity text NOT NULL,
    period_start timestamptz NOT NULL,
    quantity bigint NOT NULL,
    PRIMARY KEY (org_slug, metric, granularity, period_start)
) WITH (fillfactor = 70);
CREATE TABLE IF NOT EXISTS {schema}.usage_activity (
    org_slug text PRIMARY KEY,
    dirty boolean NOT NULL
);
"""

# Gauge folds read a project's hourly peak before raising it (to add the difference to the
# org's hourly sum); one lock for all of them keeps that read-modify-write exact. Gauges
# come from the periodic sampler, a few rows a minute: the lock is never contended by volume.
GAUGE_LOCK = 0x6D657465  # "mete"
_GAUGES = frozenset(GAUGES)
_ROLLUPS = tuple(zip(GRANULARITIES, range(4)))

_ADD_PROJECT = """
INSERT INTO metering.project_usage (project_ref, metric, granularity, period_start, org_slug, quantity)
SELECT r, m, g, to_timestamp(p), o, q
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], %s::bigint[]) AS u(r, m, g, p, o, q)
ON CONFLICT (project_ref, metric, granularity, period_start)
DO UPDATE SET quantity = project_usage.quantity + EXCLUDED.quantity
"""
_ADD_ORG = """
INSERT INTO metering.org_usage (org_slug, metric, granularity, period_start, quantity)
SELECT o, m, g, to_timestamp(p), q
FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[]) AS u(o, m, g, p, q)
ON CONFLICT (org_slug, metric, granularity, period_start)
DO UPDATE SET quantity = org_usage.quantity + EXCLUDED.quantity
"""
_PEAK_PROJECT = _ADD_PROJECT.replace("project_usage.quantity + EXCLUDED.quantity",
                                     "GREATEST(project_usage.quantity, EXCLUDED.quantity)")
_PEAK_ORG = _ADD_ORG.replace("org_usage.quantity + EXCLUDED.quantity", "GREATEST(org_usage.quantity, EXCLUDED.quantity)")


class UsageStore:
    """Folds, queries, verifies and rebuilds usage aggregates in the `metering` schema."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    def close(self) -> None:
        self.pool.close()

    # -- folding --------------------------------------------------------------------------------
    def fold(self, ledger_id: uuid.UUID, source: str, records: Sequence[Record],
             event_ids: Sequence[str] = ()) -> bool:
        """Fold in its own transaction; False if this ledger id was already folded."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            return fold(cur, ledger_id, source, records, event_ids)

    # -- reading --------------------------------------------------------------------------------
    def query(self, org_slug: str, project_ref: str | None, metric: str, granularity: str,
              start: int, end: int, limit: int = 2000) -> list[dict[str, Any]]:
        """One row per period from the one containing `start` to `end` (zero where nothing
        was recorded)."""
        periods = periods_between(granularity, start, end, limit)
        if not periods:
            return []
        if project_ref is None:
            sql = ("SELECT extract(epoch FROM period_start)::bigint, quantity FROM metering.org_usage "
                   "WHERE org_slug = %s AND metric = %s AND granularity = %s "
                   "AND period_start >= to_timestamp(%s) AND period_start <= to_timestamp(%s)")
            args: tuple[Any, ...] = (org_slug, metric, granularity, periods[0], periods[-1])
        else:
            # Filtered by organization too: a project of another org reads as nothing.
            sql = ("SELECT extract(epoch FROM period_start)::bigint, quantity FROM metering.project_usage "
                   "WHERE project_ref = %s AND org_slug = %s AND metric = %s AND granularity = %s "
                   "AND period_start >= to_timestamp(%s) AND period_start <= to_timestamp(%s)")
            args = (project_ref, org_slug, metric, granularity, periods[0], periods[-1])
        with self.pool.connection() as conn:
            found = dict(conn.execute(sql, args).fetchall())
        return [{"period_start": iso(p), "quantity": int(found.get(p, 0))} for p in periods]

    def totals(self, org_slug: str, start: int, end: int) -> dict[str, int]:
        """Per metric over [start, end) (hour-aligned): the sum of a counter, the peak of a
        gauge. Read from whole months, days and hours: a year is a few dozen rows."""
        out = {m: 0 for m in METRICS}
        pieces = cover(start, end)
        if not pieces:
            return out
        where = " OR ".join(["(granularity = %s AND period_start >= to_timestamp(%s) "
                             "AND period_start < to_timestamp(%s))"] * len(pieces))
        args: list[Any] = [org_slug]
        for g, lo, hi in pieces:
            args += [g, lo, hi]
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT metric, sum(quantity), max(quantity) FROM metering.org_usage "
                f"WHERE org_slug = %s AND ({where}) GROUP BY metric", args).fetchall()
        for metric, total, peak in rows:
            if metric in out:
                out[metric] = int(peak if metric in _GAUGES else total)
        return out

    def month_usage(self, org_slug: str, month_start: int) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        """The organization's usage in a calendar month, and each of its projects'."""
        with self.pool.connection() as conn:
            org_rows = conn.execute(
                "SELECT metric, quantity FROM metering.org_usage WHERE org_slug = %s AND granularity = 'month' "
                "AND period_start = to_timestamp(%s)", (org_slug, month_start)).fetchall()
            project_rows = conn.execute(
                "SELECT project_ref, metric, quantity FROM metering.project_usage WHERE org_slug = %s "
                "AND granularity = 'month' AND period_start = to_timestamp(%s)", (org_slug, month_start)).fetchall()
        projects: dict[str, dict[str, int]] = defaultdict(dict)
        for ref, metric, q in project_rows:
            projects[ref][metric] = int(q)
        return {m: int(q) for m, q in org_rows}, dict(projects)

    # -- what the alert checker looks at -----------------------------------------------------
    def claim_changed_orgs(self) -> list[str]:
        """Organizations whose usage changed since the last claim (each claimed once)."""
        with self.pool.connection() as conn:
            rows = conn.execute("UPDATE metering.usage_activity SET dirty = false WHERE dirty RETURNING org_slug").fetchall()
        return sorted(r[0] for r in rows)

    def mark_changed(self, org_slugs: Iterable[str]) -> None:
        with self.pool.connection() as conn:
            mark_changed(conn.cursor(), org_slugs)

    @contextlib.contextmanager
    def once(self, consumer: str, event_id: str) -> Iterator[bool]:
        """A transaction that claims `event_id` for `consumer`: yields False if it was claimed
        before. An error inside rolls the claim back (the message will be tried again)."""
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield claim(cur, SCHEMA, consumer, event_id)

    # -- exactness ------------------------------------------------------------------------------
    def ledger(self, batch: int = 200) -> Iterator[list[Record]]:
        """Every folded record, a ledger row at a time."""
        with self.pool.connection() as conn, conn.transaction():
            with conn.cursor(name="ledger_scan") as cur:
                cur.itersize = batch
                cur.execute("SELECT records FROM metering.usage_ledger")
                for (records,) in cur:
                    yield [tuple(r) for r in records]  # type: ignore[misc]

    def verify(self) -> list[str]:
        """Recompute every aggregate from the ledger (plain Python, not the fold's SQL) and
        compare with the tables. Returns the differences (none when exact)."""
        expected_projects, expected_orgs = expected_aggregates(r for rows in self.ledger() for r in rows)
        with self.pool.connection() as conn:
            projects = {(r, m, g, int(p)): int(q) for r, m, g, p, q in conn.execute(
                "SELECT project_ref, metric, granularity, extract(epoch FROM period_start)::bigint, quantity "
                "FROM metering.project_usage")}
            orgs = {(o, m, g, int(p)): int(q) for o, m, g, p, q in conn.execute(
                "SELECT org_slug, metric, granularity, extract(epoch FROM period_start)::bigint, quantity "
                "FROM metering.org_usage")}
        problems = []
        for name, want, got in (("project", expected_projects, projects), ("org", expected_orgs, orgs)):
            for key in sorted(set(want) | set(got)):
                if want.get(key) != got.get(key):
                    problems.append(f"{name} {key}: ledger says {want.get(key)}, aggregate has {got.get(key)}")
        return problems

    def rebuild(self) -> int:
        """Derive every aggregate again from the ledger, in one transaction. Returns the
        number of records folded."""
        count = 0
        with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("LOCK TABLE metering.usage_ledger IN SHARE MODE")  # no fold commits meanwhile
            cur.execute("DELETE FROM metering.project_usage")
            cur.execute("DELETE FROM metering.org_usage")
            with conn.cursor(name="rebuild_scan") as scan:
                scan.itersize = 200
                scan.execute("SELECT records FROM metering.usage_ledger")
                chunk: list[Record] = []
                for (records,) in scan:
                    chunk.extend(tuple(r) for r in records)  # type: ignore[misc]
                    if len(chunk) >= 50_000:
                        apply(cur, chunk)
                        count, chunk = count + len(chunk), []
                if chunk:
                    apply(cur, chunk)
                    count += len(chunk)
        return count

    def reset(self) -> None:
        """Forget all usage (tests and operators starting over)."""
        with self.pool.connection() as conn, conn.transaction():
            for table in ("usage_ledger", "project_usage", "org_usage", "usage_activity"):
                conn.execute(f"DELETE FROM metering.{table}")


# -- the fold (on a cursor, inside the caller's transaction) -----------------------------------

def fold(cur: psycopg.Cursor[Any], ledger_id: uuid.UUID, source: str, records: Sequence[Record],
         event_ids: Sequence[str] = ()) -> bool:
    """Append the records to the ledger and add them to the aggregates. False (and nothing
    changed) if this ledger id is already in the ledger."""
    cur.execute(
        "INSERT INTO metering.usage_ledger (ledger_id, source, event_ids, record_count, records) "
        "VALUES (%s, %s, %s::uuid[], %s, %s::json) ON CONFLICT (ledger_id) DO NOTHING",
        (ledger_id, source, list(event_ids), len(records), json.dumps(records, separators=(",", ":"))),
    )
    if cur.rowcount != 1:
        return False
    apply(cur, records)
    return True


def apply(cur: psycopg.Cursor[Any], records: Sequence[Record]) -> None:
    counters: dict[tuple[str, str, str, int], int] = defaultdict(int)
    gauges: dict[tuple[str, str, str, int], int] = {}
    for org, ref, metric, at, q in records:
        key = (org, ref, metric, at - at % 3600)
        if metric in _GAUGES:
            if q > gauges.get(key, -1):
                gauges[key] = q
        else:
            counters[key] += q
    if counters:
        _add_counters(cur, counters)
    if gauges:
        _raise_gauges(cur, gauges)
    mark_changed(cur, {k[0] for k in counters} | {k[0] for k in gauges})


def mark_changed(cur: psycopg.Cursor[Any], org_slugs: Iterable[str]) -> None:
    orgs = sorted(set(org_slugs))
    if orgs:
        cur.execute(
            "INSERT INTO metering.usage_activity (org_slug, dirty) SELECT o, true FROM unnest(%s::text[]) AS o "
            "ON CONFLICT (org_slug) DO UPDATE SET dirty = true WHERE NOT usage_activity.dirty", (orgs,))


def _add_counters(cur: psycopg.Cursor[Any], hourly: dict[tuple[str, str, str, int], int]) -> None:
    projects: dict[tuple[str, str, str, int], int] = defaultdict(int)
    orgs: dict[tuple[str, str, str, int], int] = defaultdict(int)
    org_of: dict[str, str] = {}
    for (org, ref, metric, hour), q in hourly.items():
        org_of[ref] = org
        starts = starts_of(hour)
        for g, i in _ROLLUPS:
            projects[(ref, metric, g, starts[i])] += q
            orgs[(org, metric, g, starts[i])] += q
    _upsert_projects(cur, _ADD_PROJECT, projects, org_of)
    _upsert_orgs(cur, _ADD_ORG, orgs)


def _raise_gauges(cur: psycopg.Cursor[Any], peaks: dict[tuple[str, str, str, int], int]) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (GAUGE_LOCK,))
    keys = sorted(peaks)
    cur.execute(
        "SELECT project_ref, metric, extract(epoch FROM period_start)::bigint, quantity FROM metering.project_usage "
        "WHERE granularity = 'hour' AND (project_ref, metric, period_start) IN "
        "(SELECT r, m, to_timestamp(p) FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS u(r, m, p))",
        ([k[1] for k in keys], [k[2] for k in keys], [k[3] for k in keys]))
    before = {(r, m, int(p)): int(q) for r, m, p, q in cur.fetchall()}
    projects: dict[tuple[str, str, str, int], int] = {}
    org_hours: dict[tuple[str, str, str, int], int] = defaultdict(int)
    org_of: dict[str, str] = {}
    for org, ref, metric, hour in keys:
        old = before.get((ref, metric, hour), 0)
        new = max(old, peaks[(org, ref, metric, hour)])
        org_of[ref] = org
        # The org's hour holds the sum of its projects' hourly peaks: add what this one grew.
        org_hours[(org, metric, "hour", hour)] += new - old
        for g, i in _ROLLUPS:
            k = (ref, metric, g, starts_of(hour)[i])
            projects[k] = max(projects.get(k, 0), new)
    _upsert_projects(cur, _PEAK_PROJECT, projects, org_of)
    rows = sorted(org_hours.items())
    cur.execute(
        _ADD_ORG + " RETURNING org_slug, metric, extract(epoch FROM period_start)::bigint, quantity",
        ([k[0] for k, _ in rows], [k[1] for k, _ in rows], [k[2] for k, _ in rows], [k[3] for k, _ in rows],
         [q for _, q in rows]))
    longer: dict[tuple[str, str, str, int], int] = {}
    for org, metric, hour, total in cur.fetchall():
        starts = starts_of(int(hour))
        for g, i in _ROLLUPS[1:]:
            k = (org, metric, g, starts[i])
            longer[k] = max(longer.get(k, 0), int(total))
    _upsert_orgs(cur, _PEAK_ORG, longer)


def _upsert_projects(cur: psycopg.Cursor[Any], sql: str, rows: dict[tuple[str, str, str, int], int],
                     org_of: dict[str, str]) -> None:
    # Sorted by primary key: concurrent folds then lock rows in one order and cannot deadlock.
    items = sorted(rows.items())
    cur.execute(sql, ([k[0] for k, _ in items], [k[1] for k, _ in items], [k[2] for k, _ in items],
                      [k[3] for k, _ in items], [org_of[k[0]] for k, _ in items], [q for _, q in items]))


def _upsert_orgs(cur: psycopg.Cursor[Any], sql: str, rows: dict[tuple[str, str, str, int], int]) -> None:
    items = sorted(rows.items())
    cur.execute(sql, ([k[0] for k, _ in items], [k[1] for k, _ in items], [k[2] for k, _ in items],
                      [k[3] for k, _ in items], [q for _, q in items]))


# -- the reference computation (what the aggregates must equal) --------------------------------

def expected_aggregates(records: Iterable[Sequence[Any]]) -> tuple[dict[tuple[str, str, str, int], int],
                                                                      dict[tuple[str, str, str, int], int]]:
    """Every project and organization aggregate, computed straight from raw records by the
    definitions in this module's docstring. Independent of the SQL fold on purpose."""
    projects: dict[tuple[str, str, str, int], int] = {}
    orgs: dict[tuple[str, str, str, int], int] = {}
    project_hour_peaks: dict[tuple[str, str, str, int], int] = {}
    for org, ref, metric, at, q in records:
        for g in GRANULARITIES:
            k = (ref, metric, g, period_start(g, at))
            if metric in _GAUGES:
                projects[k] = max(projects.get(k, q), q)
            else:
                projects[k] = projects.get(k, 0) + q
                ko = (org, metric, g, period_start(g, at))
                orgs[ko] = orgs.get(ko, 0) + q
        if metric in _GAUGES:
            kh = (org, ref, metric, hour_start(at))
            project_hour_peaks[kh] = max(project_hour_peaks.get(kh, q), q)
    org_hours: dict[tuple[str, str, int], int] = defaultdict(int)
    for (org, _ref, metric, hour), peak in project_hour_peaks.items():
        org_hours[(org, metric, hour)] += peak
    for (org, metric, hour), total in org_hours.items():
        for g in GRANULARITIES:
            k = (org, metric, g, period_start(g, hour))
            orgs[k] = max(orgs.get(k, total), total)
    return projects, orgs
