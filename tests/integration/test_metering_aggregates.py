"""Usage aggregates are exact, on PostgreSQL: for any period the aggregate equals what the raw
records say, across hour, day, ISO week, month and year boundaries, however the records are
batched, ordered or redelivered. No broker needed: the fold and the consumer's handler run
against a throwaway database."""

from __future__ import annotations

import copy
import random
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import psycopg
import pytest

from services.shared.usage import batches_of
from services.metering import consumer as usage_consumer
from services.metering.store import DDL, SCHEMA, UsageStore
from services.shared.contracts import OutgoingMessage, build_message, parse_message
from services.shared.db import make_pool, connect, drop_database, ensure_database, ensure_schema
from services.shared.settings import Settings
from tests.conftest import make_test_settings

COUNTERS = ("api_requests", "egress_bytes", "function_invocations", "realtime_messages")
GAUGES = ("db_size_bytes", "storage_bytes")
ORGS = {"acme": ["acmeaaaaaaaaaaaaaaaa", "acmebbbbbbbbbbbbbbbb", "acmecccccccccccccccc"],
        "umbrella": ["umbraaaaaaaaaaaaaaaa", "umbrbbbbbbbbbbbbbbbb"],
        "solo": ["solaaaaaaaaaaaaaaaaa"]}


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


# Instants where several periods end at once: hour/day/ISO week/month/year (Sun 31 Dec 2023),
# a leap day into March, a Sunday night inside a month, the ISO week 1 of 2025 that starts in
# December 2024, and an ordinary month end.
EDGES = [ts(2024, 1, 1), ts(2024, 3, 1), ts(2024, 3, 11), ts(2024, 12, 30), ts(2025, 1, 1), ts(2024, 5, 1)]


@pytest.fixture(scope="module")
def db_settings() -> Iterator[Settings]:
    s = make_test_settings("metering")
    ensure_database(s)
    ensure_schema(s, SCHEMA, DDL)
    try:
        yield s
    finally:
        drop_database(s)


@pytest.fixture
def store(db_settings: Settings) -> Iterator[UsageStore]:
    pool = make_pool(db_settings, SCHEMA, DDL, max_size=2)
    s = UsageStore(pool)
    s.reset()
    try:
        yield s
    finally:
        s.close()


def random_records(rng: random.Random, n: int) -> list[tuple[str, str, str, int, int]]:
    out = []
    for _ in range(n):
        org = rng.choice(list(ORGS))
        ref = rng.choice(ORGS[org])
        metric = rng.choice(COUNTERS + GAUGES)
        if rng.random() < 0.7:
            at = rng.choice(EDGES) + rng.randrange(-3 * 3600, 3 * 3600)
        else:
            at = rng.randrange(ts(2024, 1, 1), ts(2025, 1, 1))
        q = rng.randrange(0, 10**9) if metric in GAUGES else rng.choice([0, 1, rng.randrange(1, 10**7)])
        out.append((org, ref, metric, at, q))
    return out


# -- the reference: straight from the records, by the definitions, with datetime --------------

def start_of(granularity: str, t: int) -> int:
    d = datetime.fromtimestamp(t, timezone.utc)
    if granularity == "hour":
        d = d.replace(minute=0, second=0)
    elif granularity == "day":
        d = d.replace(hour=0, minute=0, second=0)
    elif granularity == "week":
        d = (d - timedelta(days=d.isoweekday() - 1)).replace(hour=0, minute=0, second=0)
    else:
        d = d.replace(day=1, hour=0, minute=0, second=0)
    return int(d.timestamp())


def reference(records: list[tuple[str, str, str, int, int]], org: str, ref: str | None, metric: str,
              granularity: str) -> dict[int, int]:
    mine = [r for r in records if r[0] == org and r[2] == metric and (ref is None or r[1] == ref)]
    out: dict[int, int] = defaultdict(int)
    if metric in COUNTERS:
        for _, _, _, at, q in mine:
            out[start_of(granularity, at)] += q
        return dict(out)
    peaks: dict[tuple[str, int], int] = {}
    for _, r, _, at, q in mine:
        k = (r, start_of("hour", at))
        peaks[k] = max(peaks.get(k, 0), q)
    if ref is not None:  # a project's peak of the period
        for (_, hour), q in peaks.items():
            p = start_of(granularity, hour)
            out[p] = max(out.get(p, 0), q)
        return dict(out)
    hourly: dict[int, int] = defaultdict(int)
    for (_, hour), q in peaks.items():
        hourly[hour] += q  # the org held the sum of its projects' peaks that hour
    for hour, q in hourly.items():
        p = start_of(granularity, hour)
        out[p] = max(out.get(p, 0), q)
    return dict(out)


def queried(store: UsageStore, org: str, ref: str | None, metric: str, granularity: str) -> dict[int, int]:
    rows = store.query(org, ref, metric, granularity, ts(2023, 12, 1), ts(2025, 2, 1), limit=20_000)
    return {int(datetime.fromisoformat(r["period_start"]).timestamp()): r["quantity"] for r in rows if r["quantity"]}


# -- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aggregates_equal_the_raw_records_at_every_granularity_despite_redelivery(store: UsageStore, seed: int) -> None:
    rng = random.Random(seed)
    records = random_records(rng, 2500)
    # Cut into batches of random size; deliver them in random order, a third of them twice
    # (a redelivered batch has the same id and must count once).
    batches, i = [], 0
    while i < len(records):
        size = rng.randrange(1, 300)
        batches.append((uuid.uuid4(), records[i:i + size]))
        i += size
    deliveries = batches + rng.sample(batches, len(batches) // 3)
    rng.shuffle(deliveries)
    seen: set[uuid.UUID] = set()
    for ledger_id, batch in deliveries:
        assert store.fold(ledger_id, "test", batch) is (ledger_id not in seen)
        seen.add(ledger_id)

    assert store.verify() == []
    for org, refs in ORGS.items():
        for metric in COUNTERS + GAUGES:
            for granularity in ("hour", "day", "week", "month"):
                want = {p: q for p, q in reference(records, org, None, metric, granularity).items() if q}
                assert queried(store, org, None, metric, granularity) == want, (org, metric, granularity)
            ref = rng.choice(refs)
            for granularity in ("day", "week", "month"):
                want = {p: q for p, q in reference(records, org, ref, metric, granularity).items() if q}
                assert queried(store, org, ref, metric, granularity) == want, (ref, metric, granularity)

    # Totals over arbitrary whole-hour ranges (read from months, days and hours).
    for _ in range(40):
        start = rng.choice(EDGES) + rng.randrange(-400, 400) * 3600
        end = start + rng.randrange(1, 24 * 70) * 3600
        org = rng.choice(list(ORGS))
        got = store.totals(org, start, end)
        inside = [r for r in records if start <= r[3] - r[3] % 3600 < end]
        for metric in COUNTERS:
            assert got[metric] == sum(v for v in reference(inside, org, None, metric, "hour").values()), metric
        for metric in GAUGES:
            assert got[metric] == max(reference(inside, org, None, metric, "hour").values(), default=0), metric


def test_an_organizations_size_is_the_sum_of_its_projects_peaks_at_its_busiest_hour(store: UsageStore) -> None:
    a, b = ORGS["umbrella"]
    day = ts(2024, 6, 3)  # a Monday
    samples = [
        ("umbrella", a, "db_size_bytes", day + 600, 100), ("umbrella", a, "db_size_bytes", day + 1200, 300),
        ("umbrella", b, "db_size_bytes", day + 1800, 50),  # hour 0: 300 + 50
        ("umbrella", a, "db_size_bytes", day + 3600 + 60, 200), ("umbrella", b, "db_size_bytes", day + 3600, 400),
    ]  # hour 1: 200 + 400
    store.fold(uuid.uuid4(), "test", samples[3:])  # out of order: later hour first
    store.fold(uuid.uuid4(), "test", samples[:3])
    assert queried(store, "umbrella", None, "db_size_bytes", "hour") == {day: 350, day + 3600: 600}
    assert queried(store, "umbrella", None, "db_size_bytes", "day") == {day: 600}
    assert queried(store, "umbrella", a, "db_size_bytes", "day") == {day: 300}
    assert store.totals("umbrella", day, day + 86400)["db_size_bytes"] == 600
    assert store.verify() == []


def test_the_consumer_folds_each_gateway_batch_once_even_redelivered(store: UsageStore, db_settings: Settings) -> None:
    rng = random.Random(5)
    counts: dict[tuple[str, str, str, int], int] = defaultdict(int)
    envelopes = []
    for position in range(1, 41):  # 40 gateway flushes
        batch: dict[tuple[str, str, str, int], int] = defaultdict(int)
        for _ in range(rng.randrange(1, 50)):
            org = rng.choice(list(ORGS))
            key = (org, rng.choice(ORGS[org]), rng.choice(["api_requests", "egress_bytes"]),
                   ts(2024, 12, 31, 23) + rng.randrange(0, 120) * 60)
            batch[key] += rng.randrange(1, 5000)
        for k, q in batch.items():
            counts[k] += q
        usage, _ = next(batches_of(batch, 10_000))
        message = build_message(OutgoingMessage("api_usage_recorded", 1, {"records": usage}), event_id=uuid.uuid4(),
                                producer="gateway", producer_position=position, occurred_at=datetime.now(timezone.utc))
        envelopes.append(parse_message(message))
    consumer = usage_consumer.make_consumer(db_settings, queue="test.metering.usage")
    with connect(db_settings, autocommit=True) as db:
        # Duplicates inside one batch, and whole batches again later.
        consumer._apply(db, envelopes[:25] + [copy.deepcopy(envelopes[3])])
        consumer._apply(db, [copy.deepcopy(e) for e in envelopes[10:40]])
        consumer._apply(db, [copy.deepcopy(e) for e in envelopes])
    assert consumer.applied == 40
    assert store.verify() == []
    for metric in ("api_requests", "egress_bytes"):
        for org in ORGS:
            want = sum(q for (o, _, m, _), q in counts.items() if o == org and m == metric)
            assert store.totals(org, ts(2024, 12, 1), ts(2025, 2, 1))[metric] == want


def test_rebuild_derives_the_aggregates_again_from_the_ledger(store: UsageStore, db_settings: Settings) -> None:
    records = random_records(random.Random(9), 800)
    for i in range(0, 800, 100):
        store.fold(uuid.uuid4(), "test", records[i:i + 100])
    with psycopg.connect(db_settings.db_conninfo, autocommit=True) as conn:
        before = conn.execute("SELECT count(*), sum(quantity) FROM metering.org_usage").fetchone()
        conn.execute("UPDATE metering.org_usage SET quantity = quantity + 1 WHERE ctid = "
                     "(SELECT ctid FROM metering.org_usage LIMIT 1)")
        assert len(store.verify()) == 1  # the damage is seen...
        assert store.rebuild() == 800
        assert store.verify() == []  # ...and repaired from the ledger
        assert conn.execute("SELECT count(*), sum(quantity) FROM metering.org_usage").fetchone() == before


def test_samples_measure_tenant_databases_and_buckets(store: UsageStore, db_settings: Settings, tmp_path: Any) -> None:
    from services.metering.adapters import TenantMeasurer
    from services.metering.application import MeteringApplication
    from services.shared.eventstore import open_application

    tenant = db_settings.db_name  # a database that exists stands in for a tenant's
    bucket = tmp_path / f"sp-{tenant}"
    (bucket / "avatars").mkdir(parents=True)
    (bucket / "avatars" / "a.png").write_bytes(b"x" * 1000)
    (bucket / "avatars" / ".b.png.1234abcd.part").write_bytes(b"x" * 70)  # an upload in progress
    (bucket / "_platform" / "backups").mkdir(parents=True)
    (bucket / "_platform" / "backups" / "op.dump").write_bytes(b"y" * 5000)  # the platform's, not theirs

    class Projects:
        def list_active_projects(self) -> list[dict[str, Any]]:
            return [{"ref": tenant, "org_slug": "acme", "status": "ACTIVE_HEALTHY"},
                    {"ref": "notcreatedyetaaaaaaa", "org_slug": "acme", "status": "COMING_UP"}]

    app = open_application(MeteringApplication, db_settings, in_memory=True)
    app.usage = store
    app.measurer = TenantMeasurer(store.pool, tmp_path)
    assert app.sample_tenants(Projects()) == 2  # the database not created yet is skipped
    hour = int(time.time()) // 3600 * 3600
    totals = store.totals("acme", hour, hour + 3600)
    with psycopg.connect(db_settings.db_conninfo) as conn:
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert totals["storage_bytes"] == 1000
    assert size is not None and abs(totals["db_size_bytes"] - size[0]) < 10_000_000
    assert store.verify() == []
